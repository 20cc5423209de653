"""Tool-use measurement: scoring worked by hand, and `lawtune eval` / `compare` with a tool set on the tiny model."""

from __future__ import annotations

import json
from datetime import date

import pytest

from evaluation_helpers import invoke, runner
from lawtune.cli import app
from lawtune.evaluation.tool_eval import (ToolExample, dates_in, holds_figure, numbers_in, same_arguments,
                                          same_computation, score_trace, tool_metrics)


def test_figures_are_found_in_the_forms_answers_write_them():
    assert numbers_in("补偿28,000元，即2.8万元，另有1.5个月") == [28000.0, 28000.0, 1.5]
    assert holds_figure("公司应支付经济补偿28000元。", 28000) and holds_figure("共2.8万元", 28000)
    assert holds_figure("加班费合计7306.9元", 7306.9) and not holds_figure("合计7306元", 7306.9)
    assert not holds_figure("月薪8000元", 28000) and not holds_figure("", 28000) and not holds_figure("x", None)
    assert dates_in("最后一天是2025年3月17日，或2025-03-18，或2025.3.19 / 2025/3/20") == [
        date(2025, 3, 17), date(2025, 3, 18), date(2025, 3, 19), date(2025, 3, 20)]
    assert holds_figure("申请劳动仲裁的最后一天是2025年3月17日（星期一）", "2025-03-17")
    assert not holds_figure("2025年3月18日", "2025-03-17")
    assert holds_figure("试用期最长2个月", "2个月") and not holds_figure("试用期最长6个月", "2个月")


def test_arguments_match_exactly_with_numbers_by_value():
    want = {"monthly_wage": 8000, "years": 3, "months": 5}
    assert same_arguments({"monthly_wage": 8000.0, "years": 3, "months": 5}, want)
    assert not same_arguments({"monthly_wage": 8000, "years": 3}, want)
    assert not same_arguments({**want, "unlawful": True}, want)
    assert not same_arguments({**want, "months": 6}, want)
    assert same_arguments({"known_date": " 2024-03-15"}, {"known_date": "2024-03-15"})
    assert not same_arguments({"unlawful": 1}, {"unlawful": True})


def test_arguments_compare_as_the_tool_reads_them():
    from lawtune.tools import builtin_tools

    severance = next(tool for tool in builtin_tools() if tool.name == "severance_pay")
    want = {"monthly_wage": "八千", "years": "三年", "months": "半"}
    assert same_arguments({"monthly_wage": 8000, "years": 3, "months": 6}, want, severance)
    assert same_arguments({"monthly_wage": "0.8万", "years": "3年", "months": "6个月"}, want, severance)
    assert not same_arguments({"monthly_wage": "八千", "years": "三年", "months": "五个月"}, want, severance)
    assert not same_arguments({"monthly_wage": "八千多", "years": "三年", "months": "半"}, want, severance)  # unreadable
    assert not same_arguments({"monthly_wage": 8000, "months": 42}, want, severance)  # other keys
    arbitration = next(tool for tool in builtin_tools() if tool.name == "arbitration_deadline")
    assert same_arguments({"known_date": "2024-03-01"}, {"known_date": "2024年3月1号"}, arbitration)


def test_arguments_are_exact_when_the_tool_computes_the_same():
    from lawtune.tools import builtin_tools

    tools = builtin_tools()
    want = {"monthly_wage": "8000", "years": "3年", "months": "5个月"}
    # the same length of service however it is split over the keys: the tool computes 28000 each time
    for got in ({"monthly_wage": 8000, "months": "41个月"}, {"monthly_wage": "八千", "years": "3年5个月"},
                {"monthly_wage": "0.8万", "years": "三年零五个月"}, want):
        assert same_computation("severance_pay", got, want, tools), got
        assert not same_arguments(got, want, next(t for t in tools if t.name == "severance_pay")) or got is want
    # unlawful left out halves the figure; another length; a call the tool rejects; another tool's name
    assert not same_computation("severance_pay", want, {**want, "unlawful": True}, tools)
    assert not same_computation("severance_pay", {**want, "months": "6个月"}, want, tools)
    assert not same_computation("severance_pay", {**want, "years": "3年5个月"}, want, tools)  # months twice: an error
    assert not same_computation("severance_pay", {"monthly_wage": "八千多", "months": "41个月"}, want, tools)
    assert not same_computation("no_such_tool", want, want, tools)
    # a figure the question lacks is not invented right: annual leave of 3 and of 5 years is 5 days either way,
    # but the tool's formula says which length it counted
    assert not same_computation("annual_leave_days", {"cumulative_work_years": "3年"},
                                {"cumulative_work_years": "5年"}, tools)
    assert same_computation("annual_leave_days", {"cumulative_work_years": 5}, {"cumulative_work_years": "五年"}, tools)


def test_score_keeps_the_strict_key_match_beside_the_computed_one():
    from lawtune.tools import builtin_tools

    tools = builtin_tools()
    want = {"name": "severance_pay", "arguments": {"monthly_wage": "8000", "years": "3年", "months": "5个月"}}
    got = {"name": "severance_pay", "arguments": {"monthly_wage": "8000", "months": "41个月"}}
    scores = score_trace(example("tool", [want], 28000), trace(["<tool_call>…", "28000元"], [[got], []],
                                                                 final="补偿28000元"), tools)
    assert scores["args_exact"] and not scores["args_same_keys"] and scores["figure"]
    metrics = tool_metrics([example("tool", [want], 28000)], [scores])
    assert metrics["tool_args_exact_pct"] == 100.0 and metrics["tool_args_same_keys_pct"] == 0.0


def example(kind: str, expected=(), figure=None) -> ToolExample:
    return ToolExample(prompt=[{"role": "user", "content": "q"}], tools=[], expected=list(expected), kind=kind,
                       figure=figure)


def trace(turns, calls, errors=None, final=""):
    return {"turns": turns, "calls": calls, "errors": errors or [[] for _ in turns], "results": [], "final": final}


def test_metrics_worked_by_hand():
    severance = {"name": "severance_pay", "arguments": {"monthly_wage": 8000, "years": 3, "months": 5}}
    call = '<tool_call>\n{"name": "severance_pay", ...}\n</tool_call>'
    examples = [example("tool", [severance], 28000)] * 4 + [example("no_tool"), example("ask_back"), example("ask_back")]
    traces = [
        trace([call, "补偿28000元"], [[severance], []], final="补偿28000元"),                       # all right
        trace([call, "补偿30000元"], [[{**severance, "arguments": {"monthly_wage": 8000, "years": 3}}], []],
              final="补偿30000元"),                                                            # right tool, wrong args
        trace(["<tool_call>\n{oops\n</tool_call>"], [[]], [["tool call 1: not valid JSON"]]),   # does not parse
        trace(["大概两万八"], [[]], final="大概两万八"),                                            # no call at all
        trace(["直接回答。"], [[]], final="直接回答。"),                                              # no tool: right
        trace(["请问您的月工资是多少？"], [[]], final="请问您的月工资是多少？"),                            # asked back
        trace([call, "x"], [[severance], []], final="x"),                                        # called anyway
    ]
    metrics = tool_metrics(examples, [score_trace(e, t) for e, t in zip(examples, traces)])
    assert metrics["tool_choice_pct"] == 50.0 and metrics["tool_args_exact_pct"] == 25.0
    assert metrics["tool_figure_pct"] == 25.0
    assert metrics["tool_call_parse_pct"] == 75.0  # 3 of the 4 first turns holding a block parse
    assert metrics["no_tool_pct"] == pytest.approx(66.67) and metrics["ask_back_pct"] == 50.0
    assert metrics["tool_counts"] == {"tool_questions": 4, "no_tool_questions": 3, "ask_back_questions": 2,
                                      "turns_with_a_call_block": 4}


@pytest.fixture(scope="module")
def tool_set(tmp_path_factory):
    from lawtune.tools.generate import run

    out = tmp_path_factory.mktemp("tool-set")
    run(out, n=40, seed=1)
    return out / "test.jsonl"


FAST = ["--max-new-tokens", "6", "--no-mcq"]


def test_eval_measures_a_tool_set_beside_the_qa_data(tiny_run_dir, qa_file, tool_set, tmp_path):
    invoke("eval", tiny_run_dir, "--data", qa_file, "--limit", "2", "--tool-data", tool_set, "--tool-limit", "4",
           "--out", tmp_path, *FAST)
    record = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert {"rouge-l", "tool_choice_pct", "tool_args_exact_pct", "tool_figure_pct", "no_tool_pct"} <= set(record["metrics"])
    assert record["tools"]["count"] == 4 and record["tools"]["definitions"] == "records"
    rows = [json.loads(line) for line in (tmp_path / "tool_predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    questions = [json.loads(line)["conversations"][0]["content"] for line in tool_set.read_text(encoding="utf-8").splitlines()[:4]]
    assert [row["prompt"] for row in rows] == questions and all(len(row["turns"]) >= 1 for row in rows)
    # a random tiny model writes no call: every no-tool question is "right", every tool question wrong
    counts = record["tools"]["counts"]
    assert counts["tool_questions"] + counts["no_tool_questions"] == 4
    assert record["metrics"]["tool_choice_pct"] == 0.0 and record["metrics"]["no_tool_pct"] in (0.0, 100.0)


def test_eval_on_a_tool_set_alone_and_with_every_builtin_tool(tiny_run_dir, tool_set, tmp_path):
    invoke("eval", tiny_run_dir, "--data", tool_set, "--limit", "2", "--tools", "builtin", "--out", tmp_path, *FAST)
    record = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert "rouge-l" not in record["metrics"] and record["tools"]["definitions"] == "builtin"
    assert record["data"]["count"] == 0 and record["tools"]["count"] == 2


def test_compare_reports_tool_metrics_and_gates_on_them(tiny_run_dir, qa_file, tool_set, tmp_path):
    try:
        _compare_with_a_tool_gate(tiny_run_dir, qa_file, tool_set, tmp_path)
    finally:  # the run fixture is shared: a failed gate left in it would make `lawtune serve` refuse it later
        (tiny_run_dir / "quality_gate.json").unlink(missing_ok=True)


def _compare_with_a_tool_gate(tiny_run_dir, qa_file, tool_set, tmp_path):
    result = runner.invoke(app, [str(a) for a in ("compare", "base", tiny_run_dir, "--data", qa_file, "--limit", "2",
                                                  "--tool-data", tool_set, "--tool-limit", "3", "--out", tmp_path,
                                                  "--min-tool-args-exact", "90", *FAST)])
    assert result.exit_code == 1, result.output  # the random model calls nothing: the gate fails
    assert "right tool, exact arguments % ≥ 90" in result.output
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "right tool chosen %" in markdown and "final answer holds the right figure %" in markdown
    first = json.loads(tool_set.read_text(encoding="utf-8").splitlines()[0])["conversations"][0]["content"]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "## Tool questions / 工具题" in markdown and first in markdown and "工具题 Tool questions" in html
    verdict = json.loads((tiny_run_dir / "quality_gate.json").read_text(encoding="utf-8"))
    assert not verdict["passed"] and verdict["checks"][0]["value"] == 0.0
    assert (tmp_path / "base" / "tool_predictions.jsonl").is_file() and (tmp_path / "tuned" / "tool_predictions.jsonl").is_file()


def test_a_bad_tool_set_is_one_clear_error(tiny_run_dir, qa_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tools": [], "conversations": "nope"}\n', encoding="utf-8")
    result = runner.invoke(app, ["eval", str(tiny_run_dir), "--data", str(qa_file), "--tool-data", str(bad), *FAST])
    assert result.exit_code != 0 and f"{bad}:1" in str(result.exception)
    result = runner.invoke(app, ["eval", str(tiny_run_dir), "--data", str(qa_file), "--tools", "mine", *FAST])
    assert result.exit_code != 0 and "builtin" in (str(result.exception) + result.output)
