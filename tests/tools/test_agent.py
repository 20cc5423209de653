"""The agent loop (lawtune.tools.agent) with the real built-in tools, driven by scripted model turns: the
texts a model would write are the input under test, so every path is reached (a model that answers, one that
loops on calls, calls an unknown tool, gives bad arguments, writes a block that does not parse, and tools that
raise or hang). tests/serving/test_api_tools.py runs the same loop on a live server and a real model.

    .venv/bin/pytest tests/tools/test_agent.py -q
"""

from __future__ import annotations

import json
import time

from lawtune.tools import Tool, builtin_tools
from lawtune.tools.agent import LOOP_MESSAGE, Agent, run_agent
from lawtune.modeling.tool_format import render_tool_call

QUESTION = [{"role": "user", "content": "工作3年5个月，月薪8000，协商解除，补偿多少"}]
SEVERANCE_CALL = render_tool_call("severance_pay", {"monthly_wage": 8000, "years": 3, "months": 5})


class Script:
    """Model turns in order; records what each turn was asked with."""

    def __init__(self, *turns: str):
        self.turns, self.asked = list(turns), []

    def __call__(self, conversation, definitions):
        self.asked.append((list(conversation), definitions))
        return self.turns.pop(0) if len(self.turns) > 1 else self.turns[0]


def tool_results(conversation) -> list[dict]:
    return [json.loads(m["content"]) for m in conversation if m["role"] == "tool"]


def test_severance_question_gets_28000_citing_article_47_through_the_tool():
    def answer_from_result(conversation, definitions):
        if conversation[-1]["role"] != "tool":
            return SEVERANCE_CALL
        result = json.loads(conversation[-1]["content"])
        return f"经济补偿为{result['result']}元，依据{result['articles'][0]}。"

    result = run_agent(Agent(builtin_tools()), answer_from_result, QUESTION)
    assert result.finish == "answer" and result.rounds == 1
    assert result.answer == "经济补偿为28000元，依据《劳动合同法》第四十七条。"
    call = result.trace()["calls"][0]
    assert call["name"] == "severance_pay" and call["ok"] and call["result"]["result"] == 28000
    assert call["arguments"] == {"monthly_wage": 8000, "years": 3, "months": 5}
    # the conversation holds the call turn and the tool turn, in the contract's shapes
    assistant, tool = result.messages[1], result.messages[2]
    assert assistant["tool_calls"][0]["function"]["name"] == "severance_pay"
    assert tool == {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "name": "severance_pay",
                    "content": tool["content"]}


def test_the_model_is_offered_every_builtin_tool():
    script = Script("直接回答。")
    result = run_agent(Agent(builtin_tools()), script, QUESTION)
    assert result.finish == "answer" and result.rounds == 0 and result.calls == []
    names = {d["function"]["name"] for d in script.asked[0][1]}
    assert {"severance_pay", "overtime_pay", "arbitration_deadline", "annual_leave_days"} <= names


def test_a_model_that_loops_on_calls_stops_after_max_rounds_with_a_clear_message():
    script = Script(SEVERANCE_CALL)
    result = run_agent(Agent(builtin_tools(), max_rounds=3), script, QUESTION)
    assert result.finish == "max_rounds" and result.rounds == 3
    assert result.answer == LOOP_MESSAGE.format(rounds=3)
    assert len(script.asked) == 4 and len(result.calls) == 3  # 3 rounds ran; the 4th call was not run
    assert [c.round for c in result.calls] == [1, 2, 3]


def test_unknown_tool_bad_arguments_and_an_unparseable_block_come_back_as_errors_the_model_reads():
    turns = Script(render_tool_call("no_such_tool", {}) + "\n" + render_tool_call("severance_pay", {"monthly_wage": -5}),
                   '<tool_call>\n{"name": "severance_pay", "arguments": {monthly_wage: 8000}}\n</tool_call>',
                   "抱歉，无法计算。")
    result = run_agent(Agent(builtin_tools()), turns, QUESTION)
    assert result.finish == "answer" and result.answer == "抱歉，无法计算。" and result.rounds == 2
    first, second = tool_results(turns.asked[1][0]), tool_results(turns.asked[2][0])[2:]
    assert "no_such_tool" in first[0]["error"] and "severance_pay" in first[0]["error"]  # lists what exists
    assert "monthly_wage" in first[1]["error"]
    assert "无法解析" in second[0]["error"]
    assert [c.ok for c in result.calls] == [False, False, False]


def test_a_tool_that_raises_or_hangs_gives_an_error_result_within_the_timeout():
    def broken(x: int) -> dict:
        """Always fails."""
        raise RuntimeError("disk on fire")

    def stuck(x: int) -> dict:
        """Never returns in time."""
        time.sleep(30)
        return {"result": x}

    agent = Agent([Tool.from_function(broken), Tool.from_function(stuck)], timeout=0.3)
    script = Script(render_tool_call("broken", {"x": 1}) + "\n" + render_tool_call("stuck", {"x": 2}), "完成。")
    started = time.monotonic()
    result = run_agent(agent, script, QUESTION)
    assert time.monotonic() - started < 5
    errors = [r["error"] for r in tool_results(result.messages)]
    assert "disk on fire" in errors[0] and "超时" in errors[1]
    assert result.finish == "answer" and result.answer == "完成。"


# ---- on a real model: lawtune infer / chat --tools builtin ------------------------------------------------


def _long_model(tiny_model_dir, tmp_path):
    """The tiny model with room for the built-in tools' ~5000 tiny-tokenizer tokens of definitions."""
    import shutil

    folder = tmp_path / "tiny-long"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 16384
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_infer_and_chat_with_tools_builtin_run_the_loop_on_a_real_model(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from lawtune.cli import app
    from lawtune.evaluation.generation import GenerationSettings
    from lawtune.evaluation.infer import chat_loop

    folder = _long_model(tiny_model_dir, tmp_path)
    result = CliRunner().invoke(app, ["infer", str(folder), "--tools", "builtin", "--max-new-tokens", "6",
                                      "--prompt", QUESTION[0]["content"]])
    assert result.exit_code == 0, result.output
    assert result.output.strip()  # the random model's answer (it calls no tool: nothing taught it to)
    questions = iter([QUESTION[0]["content"], "/exit"])
    seen = []
    history = chat_loop(str(folder), GenerationSettings(max_new_tokens=4, max_input_length=8192),
                        read=lambda _: next(questions), write=lambda *a, **k: seen.append(a),
                        agent=Agent(builtin_tools()))
    assert [m["role"] for m in history] == ["user", "assistant"]
    bad = CliRunner().invoke(app, ["infer", str(folder), "--tools", "all", "--prompt", "x"])
    assert bad.exit_code != 0 and "--tools 'all'" in str(bad.exception)  # main() prints it as one line


def test_with_a_knowledge_base_the_servers_agent_looks_articles_up(tmp_path):
    from lawtune.kb.build import build
    from lawtune.kb.rag import Rag
    from lawtune.serving.settings import ServeSettings
    from lawtune.serving.tool_calls import server_agent

    kb = tmp_path / "kb.sqlite"
    build([], kb)  # the bundled laws
    with Rag.open(kb) as rag:
        agent = server_agent(ServeSettings(model="unused", tools="builtin", kb=str(kb)), rag)
        assert {"lookup_article", "search_law", "severance_pay"} <= {tool.name for tool in agent.tools}

        def ask(conversation, definitions):
            if conversation[-1]["role"] != "tool":
                return render_tool_call("lookup_article", {"law": "劳动合同法", "article": 47})
            return "见第四十七条。"

        result = run_agent(agent, ask, QUESTION)
    call = result.calls[0]
    assert call.ok and "经济补偿" in json.dumps(call.result, ensure_ascii=False)
    assert server_agent(ServeSettings(model="unused"), None) is None  # serve without --tools: no agent
