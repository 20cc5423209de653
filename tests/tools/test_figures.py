"""Figures as written: durations read in the parameter's unit, and the spans of a question each reader reads."""

from __future__ import annotations

import random

import pytest

from lawtune.tools import builtin_tools, run_tool_call
from lawtune.tools.cases import BUILDERS
from lawtune.tools.figures import figure_spans, read_months, read_years


@pytest.mark.parametrize(("text", "years"), [
    ("3年", 3), ("三年", 3), ("3年5个月", 41 / 12), ("3年零5个月", 41 / 12), ("三年零五个月", 41 / 12),
    ("三年五个月", 41 / 12), ("41个月", 41 / 12), ("三年半", 3.5), ("半年", 0.5), ("两年", 2), (7, 7),
])
def test_years_read_combined_durations(text, years):
    assert read_years(text) == pytest.approx(years)


@pytest.mark.parametrize(("text", "months"), [
    ("5个月", 5), ("五个月", 5), ("41个月", 41), ("1年2个月", 14), ("半", 6), ("半年", 6), ("八个月", 8), (5, 5),
])
def test_months_read_durations_in_months(text, months):
    assert read_months(text) == months


@pytest.mark.parametrize("arguments", [
    {"monthly_wage": "8000", "years": "3年5个月"}, {"monthly_wage": "八千", "years": "三年零五个月"},
    {"monthly_wage": "8000元", "months": "41个月"}, {"monthly_wage": 8000, "years": 3, "months": 5},
    {"monthly_wage": "0.8万", "years": "3年", "months": "5个月"},
])
def test_three_years_five_months_in_every_spelling_is_28000(arguments):
    outcome = run_tool_call(builtin_tools(), "severance_pay", arguments)
    assert outcome.ok and outcome.content["result"] == 28000, outcome.content


def test_years_holding_months_and_months_again_is_an_error_not_a_double_count():
    outcome = run_tool_call(builtin_tools(), "severance_pay", {"monthly_wage": 8000, "years": "3年5个月", "months": "5个月"})
    assert not outcome.ok and "已含5个月" in outcome.content["error"]


def test_combined_years_elsewhere():
    tools = builtin_tools()
    leave = run_tool_call(tools, "annual_leave_days", {"cumulative_work_years": "9年11个月"})
    assert leave.ok and leave.content["result"] == 5 and "9年11个月" in leave.content["formula"]
    probation = run_tool_call(tools, "probation_limits", {"contract_years": "2年11个月"})
    assert probation.ok and probation.content["result"]["max_probation_months"] == 2


def test_spans_of_the_acceptance_question():
    spans = figure_spans("工作3年5个月，月薪8000，协商解除，补偿多少")
    assert spans["amount"] == ["8000"]
    assert spans["years"] == ["3年5个月", "3年"] and spans["months"] == ["3年5个月", "5个月"]
    assert spans["date"] == [] and spans["hours"] == []


def test_spans_take_dates_out_first_and_skip_small_numbers():
    spans = figure_spans("我2019年3月1日入职，2024/8/13离职，第一次，离职前平均工资0.8万元一个月，加班十六个小时")
    assert spans["date"] == ["2019年3月1日", "2024/8/13"]
    assert spans["amount"] == ["0.8万元", "0.8万"]  # 一 (第一次) and 2019 (a date's year) are no wage
    assert "2019年" not in spans["years"] and spans["hours"] == ["十六个小时"]


def test_one_month_after_an_amount_is_per_month_not_a_duration():
    spans = figure_spans("离职前平均工资13.9k一个月，我2015年9月22号入职")
    assert spans["years"] == [] and spans["months"] == [] and spans["amount"] == ["13.9k"]
    assert figure_spans("干了一个月，月薪8000")["months"] == ["一个月"]


def test_no_figure_no_span():
    assert figure_spans("公司不给交社保，我能解除合同吗？") == {"date": [], "amount": [], "years": [], "months": [],
                                                      "hours": []}


def test_every_generated_argument_is_a_span_of_its_kind():
    """What the call grammar allows (lawtune.tools.constrain) holds every argument the generator writes."""
    schemas = {tool.name: tool.parameters["properties"] for tool in builtin_tools()}
    rng = random.Random(7)
    for name, build in BUILDERS.items():
        for _ in range(150):
            case = build(rng)
            spans = figure_spans(case.question)
            for key, value in case.arguments.items():
                schema = schemas[name][key]
                kind = schema.get("x-figure") or ("date" if schema.get("format") == "date" else None)
                if kind is not None:
                    assert value in spans[kind], (name, key, value, case.question, spans)
