"""Reading the model's text as OpenAI tool calls (lawtune.serving.tool_calls) and the chat shape that streams
them: given texts a model could write, split at every point, the content, calls and problems come out the
same, and the streamed chunks assemble (in the openai SDK's own `ChatCompletionStreamState`) into exactly
the non-streamed response. No model here: the texts are the input under test (tests/serving/test_api_tools.py
drives the live server).

    .venv/bin/pytest tests/serving/test_tool_calls.py -q
"""

from __future__ import annotations

import json

import llguidance
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from lawtune.serving.tool_calls import ToolChatShape
from lawtune.serving.engines import Finished, GenerationRequest, Prompt, TextDelta, Usage
from lawtune.serving.tool_calls import MAX_FORCED_CALLS, CallStream, ToolPlan, merge_call_deltas, tool_grammar

SEVERANCE = {"type": "function", "function": {"name": "severance_pay", "description": "经济补偿", "parameters": {
    "type": "object", "properties": {"monthly_wage": {"type": "number"}, "years": {"type": "integer"}},
    "required": ["monthly_wage", "years"]}}}
LOOKUP = {"type": "function", "function": {"name": "lookup_article", "parameters": {
    "type": "object", "properties": {"law": {"type": "string"}, "article": {"type": "integer"}}}}}
CALL = '<tool_call>\n{"name": "severance_pay", "arguments": {"monthly_wage": 8000, "years": 3}}\n</tool_call>'
CALL2 = '<tool_call>\n{"name": "lookup_article", "arguments": {"law": "劳动合同法", "article": 47}}\n</tool_call>'


def read(text: str, step: int, **kwargs) -> CallStream:
    stream = CallStream(**kwargs)
    for at in range(0, len(text), step):
        stream.push(text[at:at + step])
    stream.finish()
    return stream


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_content_then_parallel_calls_read_the_same_at_any_split(step):
    stream = read("我来计算。" + CALL + "\n" + CALL2 + "\n", step)
    assert stream.content == "我来计算。"
    assert [(c.name, c.arguments) for c in stream.calls] == [
        ("severance_pay", {"monthly_wage": 8000, "years": 3}), ("lookup_article", {"law": "劳动合同法", "article": 47})]
    assert stream.problems == []
    assert all(c.id.startswith("call_") for c in stream.calls) and len({c.id for c in stream.calls}) == 2


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_a_block_that_does_not_parse_is_a_problem_never_content(step):
    broken = '<tool_call>\n{"name": "severance_pay", "arguments": {"monthly_wage": 80\n</tool_call>'
    stream = read("好的。" + broken, step)
    assert stream.content == "好的。" and stream.calls == []
    assert len(stream.problems) == 1 and "tool call 1" in stream.problems[0]
    unclosed = read("答：" + CALL[:40], step)
    assert unclosed.content == "答：" and "not closed" in unclosed.problems[0]


def test_text_that_only_looks_like_the_start_of_a_call_is_content_in_the_end():
    stream = CallStream()
    assert [p.text for p in stream.push("比较 a<b 和 <tool")] == ["比较 a<b 和 "]  # "<tool" held back
    assert [p.text for p in stream.finish()] == ["<tool"]
    assert stream.content == "比较 a<b 和 <tool"


def test_unknown_names_a_second_call_without_parallel_and_infinite_numbers_are_problems():
    stream = read(CALL + CALL2 + CALL, 1000, parallel=False, names=["severance_pay"])
    assert [c.name for c in stream.calls] == ["severance_pay"]
    assert any("lookup_article" in p and "not one of the tools" in p for p in stream.problems)
    assert any("parallel_tool_calls is false" in p for p in stream.problems)
    huge = read('<tool_call>\n{"name": "severance_pay", "arguments": {"monthly_wage": 1e999, "years": 1}}\n'
                '</tool_call>', 1000)
    assert huge.calls == [] and "out of range" in huge.problems[0]


def test_upstream_deltas_merge_as_the_sdk_assembles_them():
    calls: list[dict] = []
    merge_call_deltas(calls, [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "severance_pay", "arguments": ""}}])
    merge_call_deltas(calls, [{"index": 0, "function": {"arguments": '{"years": '}}])
    merge_call_deltas(calls, [{"index": 0, "function": {"arguments": "3}"}}, {"index": 1, "id": "call_b",
                               "function": {"name": "lookup_article", "arguments": "{}"}}])
    assert calls == [{"id": "call_a", "type": "function", "function": {"name": "severance_pay", "arguments": '{"years": 3}'}},
                     {"id": "call_b", "type": "function", "function": {"name": "lookup_article", "arguments": "{}"}}]


# ---- the grammar of forced calls --------------------------------------------------------------------------


def test_the_forced_call_grammar_is_valid_lark_with_one_json_per_tool():
    named = tool_grammar([SEVERANCE, LOOKUP], "severance_pay", parallel=True)
    assert "lookup_article" not in named and named.count("%json") == 1 and "call (" not in named
    required = tool_grammar([SEVERANCE, LOOKUP], "required", parallel=True)
    assert required.count("%json") == 2 and required.count('"\\n" call') == MAX_FORCED_CALLS - 1
    assert tool_grammar([SEVERANCE], "required", parallel=False).startswith("start: call\n")
    for grammar in (named, required):
        failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            llguidance.LLMatcher.grammar_from_lark(grammar))
        assert not failed, messages


# ---- the chat shape: streamed chunks == the whole response ---------------------------------------------


def _shape(n: int = 1, parallel: bool = True) -> ToolChatShape:
    generation = GenerationRequest(prompt=Prompt(10, list(range(10))), model="tiny", max_tokens=100, n=n,
                                   request_id="test")
    plan = ToolPlan("auto", [SEVERANCE, LOOKUP], parallel, parses=True, reads_calls=True)
    return ToolChatShape(generation, None, plan)


def _events(texts: list[str], step: int) -> list:
    events = []
    for index, text in enumerate(texts):
        events += [TextDelta(text[at:at + step], index) for at in range(0, len(text), step)]
    return events + [Finished("stop", Usage(10, 30), index) for index in range(len(texts))]


def _streamed(texts: list[str], step: int):
    """The SSE chunks of the shape, fed to the SDK's own stream accumulator."""
    shape, state = _shape(n=len(texts)), ChatCompletionStreamState(input_tools=[SEVERANCE, LOOKUP])
    chunks = shape.opening() + [chunk for event in _events(texts, step) for chunk in shape.chunks(event)]
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return chunks, state.get_final_completion()


def _whole(texts: list[str]) -> dict:
    shape = _shape(n=len(texts))
    for event in _events(texts, 1000):
        shape.add(event)
    return shape.whole()


@pytest.mark.parametrize("step", [1, 4, 1000])
def test_streamed_tool_calls_assemble_in_the_sdk_into_the_whole_response(step):
    texts = ["我来计算。" + CALL + "\n" + CALL2, "无需工具，直接回答。"]
    chunks, final = _streamed(texts, step)
    whole = _whole(texts)
    for choice, expected in zip(final.choices, whole["choices"]):
        assert choice.finish_reason == expected["finish_reason"]
        assert choice.message.content == expected["message"]["content"]
        got = [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or []]
        want = [(c["function"]["name"], json.loads(c["function"]["arguments"]))
                for c in expected["message"].get("tool_calls") or []]
        assert got == want
    assert final.choices[0].finish_reason == "tool_calls" and final.choices[1].finish_reason == "stop"
    assert final.choices[0].message.content == "我来计算。"
    assert [c.function.parsed_arguments for c in final.choices[0].message.tool_calls] == [None, None]  # not strict
    assert final.choices[0].message.tool_calls[0].id.startswith("call_")
    # each call: its index, id, type and name first (arguments ""), then the arguments
    deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
              if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert deltas[0]["index"] == 0 and deltas[0]["type"] == "function" and deltas[0]["function"]["arguments"] == ""
    assert set(deltas[1]) == {"index", "function"} and json.loads(deltas[1]["function"]["arguments"])["years"] == 3
    assert deltas[2]["index"] == 1 and deltas[2]["function"]["name"] == "lookup_article"
    assert not any("<tool" in (c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])


def test_a_broken_call_is_reported_in_the_lawtune_field_with_finish_stop_streamed_and_whole():
    texts = ['答案如下<tool_call>\n{"name": "severance_pay", "arguments": {oops}}\n</tool_call>']
    chunks, final = _streamed(texts, 3)
    whole = _whole(texts)
    assert final.choices[0].finish_reason == whole["choices"][0]["finish_reason"] == "stop"
    assert final.choices[0].message.content == whole["choices"][0]["message"]["content"] == "答案如下"
    assert final.choices[0].message.tool_calls is None and "tool_calls" not in whole["choices"][0]["message"]
    assert whole["lawtune"]["tool_call_errors"][0]["index"] == 0
    assert "not valid JSON" in whole["lawtune"]["tool_call_errors"][0]["error"]
    assert chunks[-1]["lawtune"] == whole["lawtune"]


# ---- the agent loop as an engine (serve --tools builtin) ------------------------------------------------


class ScriptedModel:
    """An engine whose "model" writes the given texts in turn (a real model cannot be made to loop on calls);
    prompts are counted by characters."""

    def __init__(self, texts: list[str], context: int = 100_000):
        self.texts, self.context, self.requests, self.prompts = list(texts), context, [], []

    def prompt(self, model, *, messages=None, text=None, ids=None, tools=None) -> Prompt:
        self.prompts.append(messages)
        return Prompt(len(json.dumps(messages, ensure_ascii=False)) + len(json.dumps(tools or [])), messages=messages)

    def context_length(self, model):
        return self.context

    async def generate(self, request):
        self.requests.append(request)
        text = self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]
        for at in range(0, len(text), 7):
            yield TextDelta(text[at:at + 7])
        yield Finished("stop", Usage(request.prompt.tokens, len(text)))


def _run_agent_engine(model: ScriptedModel, rounds: int = 3, grammar: str | None = None) -> tuple[str, Finished]:
    import asyncio

    from lawtune.serving.tool_agent import AgentEngine
    from lawtune.tools import builtin_tools
    from lawtune.tools.agent import Agent

    messages = [{"role": "user", "content": "工作3年5个月，月薪8000，协商解除，补偿多少"}]
    prompt = model.prompt("m", messages=messages)
    request = GenerationRequest(prompt=prompt, model="m", max_tokens=500, grammar=grammar)

    async def collect():
        text, last = "", None
        async for event in AgentEngine(model, Agent(builtin_tools(), max_rounds=rounds)).generate(request):
            if isinstance(event, TextDelta):
                text += event.text
            else:
                last = event
        return text, last

    return asyncio.run(collect())


SEVERANCE_8000 = '<tool_call>\n{"name": "severance_pay", "arguments": {"monthly_wage": 8000, "years": 3, "months": 5}}\n</tool_call>'


def test_the_agent_engine_runs_the_call_and_the_model_answers_from_its_result():
    model = ScriptedModel([SEVERANCE_8000, "经济补偿为28000元（《劳动合同法》第四十七条）。"])
    text, finished = _run_agent_engine(model, grammar="start: call")
    assert text == "经济补偿为28000元（《劳动合同法》第四十七条）。" and finished.finish_reason == "stop"
    trace = finished.lawtune["tools"]
    assert trace["rounds"] == 1 and trace["finish"] == "answer"
    assert trace["calls"][0]["result"]["result"] == 28000
    assert trace["calls"][0]["result"]["articles"] == ["《劳动合同法》第四十七条"]
    # the second round was prompted with the call turn and the tool's result; only the first was forced
    assert model.prompts[-1][-1]["role"] == "tool" and "28000" in model.prompts[-1][-1]["content"]
    assert [r.grammar for r in model.requests] == ["start: call", None]
    # after the forced round the model decodes under the conversation's rules (lawtune.tools.constrain.LazyCall)
    assert [r.tool_rules for r in model.requests] == [False, True]
    assert finished.usage.completion_tokens == len(SEVERANCE_8000) + len(text)


def test_a_model_looping_on_calls_ends_after_the_rounds_with_a_clear_message():
    from lawtune.tools.agent import LOOP_MESSAGE

    model = ScriptedModel([SEVERANCE_8000])
    text, finished = _run_agent_engine(model, rounds=3)
    assert text == LOOP_MESSAGE.format(rounds=3) and finished.finish_reason == "stop"
    assert finished.lawtune["tools"]["finish"] == "max_rounds" and len(finished.lawtune["tools"]["calls"]) == 3
    assert len(model.requests) == 4


def test_a_conversation_outgrowing_the_context_ends_with_finish_length():
    model = ScriptedModel([SEVERANCE_8000], context=400)  # the first prompt fits, the one with the result not
    text, finished = _run_agent_engine(model)
    assert finished.finish_reason == "length" and finished.lawtune["tools"]["finish"] == "length"
    assert "上下文" in text and len(model.requests) == 1


def test_auto_decodes_under_the_conversations_rules_on_a_local_engine_only():
    """tool_choice auto: the local engine's LazyCall (the rules eval and infer apply); forced choices have their
    grammar; none has neither; an upstream parses on its own."""
    def planned(mode: str, upstream: bool = False) -> GenerationRequest:
        plan = ToolPlan(mode, [SEVERANCE], parses=not upstream, reads_calls=True)
        generation = GenerationRequest(prompt=Prompt(1), model="m", max_tokens=8)
        plan.apply(generation)
        return generation

    assert planned("auto").tool_rules and planned("auto").grammar is None
    assert not planned("required").tool_rules and planned("required").grammar
    assert not planned("auto", upstream=True).tool_rules
    none = ToolPlan("none", None)
    generation = GenerationRequest(prompt=Prompt(1), model="m", max_tokens=8)
    none.apply(generation)
    assert not generation.tool_rules and generation.grammar is None
