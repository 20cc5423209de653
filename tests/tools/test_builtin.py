"""Built-in legal tools against cases worked by hand from the statute text, and run_tool_call's error paths.

Statutes (src/lawtune/kb/laws/, /work/shared/data/raw/laws_lawrefbook): 劳动合同法第四十七条 (每满一年一个月；
六个月以上不满一年的按一年；不满六个月的半个月；高于上年度职工月平均工资三倍的按三倍、年限最高十二年；月工资 =
解除前十二个月平均工资), 第八十七条 (赔偿金 = 经济补偿标准 × 2).
"""

from __future__ import annotations

import json
import time

import pytest

from lawtune.tools import Tool, ToolError, builtin_tools, run_tool_call


@pytest.fixture(scope="module")
def tools():
    return builtin_tools()


def run(tools, name, **arguments):
    outcome = run_tool_call(tools, name, arguments)
    assert outcome.ok, outcome.content
    return outcome.content


# -- severance_pay ---------------------------------------------------------------------------------------------
def test_acceptance_case_three_years_five_months(tools):
    # 3 full years → 3 months; 5 months left, 不满六个月 → half a month; 3.5 × 8000 = 28000
    content = run(tools, "severance_pay", monthly_wage=8000, years=3, months=5)
    assert content["result"] == 28000
    assert content["articles"] == ["《劳动合同法》第四十七条"]
    assert "3.5个月 × 8000元 = 28000元" in content["formula"]


@pytest.mark.parametrize(("start", "end", "months_of_pay"), [
    ("2020-03-01", "2020-08-31", 1.0),    # exactly 6 months (both days worked) → 六个月以上 → one year
    ("2020-03-01", "2020-09-01", 1.0),    # 6 months + 1 day
    ("2020-03-01", "2020-08-30", 0.5),    # one day short of 6 months → half a month
    ("2020-03-01", "2020-03-01", 0.5),    # a single day → 不满六个月 → half a month
    ("2019-03-01", "2022-02-28", 3.0),    # exactly 3 years
    ("2019-03-01", "2022-03-01", 3.5),    # 3 years + 1 day
    ("2020-01-31", "2020-07-30", 1.0),    # from a month end: Jan 31 + 6 months = Jul 31 (exclusive) → 6 months
    ("2020-01-31", "2020-07-29", 0.5),
])
def test_month_rounding_from_dates(tools, start, end, months_of_pay):
    content = run(tools, "severance_pay", monthly_wage=10000, start_date=start, end_date=end)
    assert content["details"]["months_of_pay"] == months_of_pay
    assert content["result"] == months_of_pay * 10000


def test_exactly_six_months_and_whole_years_from_years_and_months(tools):
    assert run(tools, "severance_pay", monthly_wage=6000, months=6)["result"] == 6000
    assert run(tools, "severance_pay", monthly_wage=6000, months=5)["result"] == 3000
    assert run(tools, "severance_pay", monthly_wage=6000, years=2)["result"] == 12000
    assert run(tools, "severance_pay", monthly_wage=6000, months=41)["result"] == 21000  # 3年5个月


def test_threefold_cap_without_the_twelve_year_limit_binding(tools):
    # 30000 > 3 × 9000 = 27000 → base 27000; 5 years → 5 × 27000
    content = run(tools, "severance_pay", monthly_wage=30000, years=5, local_average_wage=9000)
    assert content["result"] == 135000 and content["details"]["capped"] is True


def test_both_caps_and_twelve_year_limit(tools):
    # 20 years 7 months → 21 months, but capped wage → at most 12 years: 12 × 3 × 10000
    content = run(tools, "severance_pay", monthly_wage=50000, years=20, months=7, local_average_wage=10000)
    assert content["result"] == 360000 and content["details"]["months_of_pay"] == 12


def test_twelve_year_limit_only_applies_to_wages_above_the_cap(tools):
    # 20000 ≤ 3 × 10000: no cap, all 20 years count
    content = run(tools, "severance_pay", monthly_wage=20000, years=20, local_average_wage=10000)
    assert content["result"] == 400000 and content["details"]["capped"] is False
    # exactly three times the average is not 高于 → not capped
    assert run(tools, "severance_pay", monthly_wage=30000, years=13, local_average_wage=10000)["result"] == 390000


def test_unlawful_termination_doubles_and_cites_article_87(tools):
    content = run(tools, "severance_pay", monthly_wage=8000, years=3, months=5, unlawful=True)
    assert content["result"] == 56000
    assert content["articles"] == ["《劳动合同法》第四十七条", "《劳动合同法》第八十七条"]


def test_wage_below_the_local_minimum_uses_the_minimum(tools):
    content = run(tools, "severance_pay", monthly_wage=1500, years=2, local_minimum_wage=2000)
    assert content["result"] == 4000 and "《劳动合同法实施条例》第二十七条" in content["articles"]


def test_fractional_wage_rounds_to_the_fen(tools):
    assert run(tools, "severance_pay", monthly_wage=8333.335, months=3)["result"] == 4166.67


@pytest.mark.parametrize(("arguments", "message"), [
    ({"monthly_wage": 8000}, "缺少期限"),
    ({"monthly_wage": -8000, "years": 1}, "monthly_wage"),
    ({"monthly_wage": 8000, "years": 1, "start_date": "2020-01-01", "end_date": "2021-01-01"}, "只用一种方式"),
    ({"monthly_wage": 8000, "start_date": "2020-01-01"}, "需要同时给出"),
    ({"monthly_wage": 8000, "start_date": "2021-01-01", "end_date": "2020-01-01"}, "早于"),
    ({"monthly_wage": 8000, "start_date": "2021-02-30", "end_date": "2022-01-01"}, "start_date"),
    ({"monthly_wage": "八千", "years": 1}, "monthly_wage"),
    ({"wage": 8000, "years": 1}, "未知参数 wage"),
])
def test_bad_arguments_are_error_outcomes(tools, arguments, message):
    outcome = run_tool_call(tools, "severance_pay", arguments)
    assert not outcome.ok and message in outcome.content["error"]
    assert json.loads(outcome.message_content()) == outcome.content


# -- run_tool_call --------------------------------------------------------------------------------------------
def test_unknown_tool_lists_the_available_ones(tools):
    outcome = run_tool_call(tools, "compute_everything", {})
    assert not outcome.ok and "compute_everything" in outcome.content["error"]
    assert "severance_pay" in outcome.content["error"]


def test_arguments_as_a_json_string_and_broken_json(tools):
    assert run_tool_call(tools, "severance_pay", '{"monthly_wage": 8000, "years": 1}').content["result"] == 8000
    outcome = run_tool_call(tools, "severance_pay", '{"monthly_wage": 8000,')
    assert not outcome.ok and "not valid JSON" in outcome.content["error"]
    assert not run_tool_call(tools, "severance_pay", "[1, 2]").ok


def explode(value: int) -> dict:
    """Always fails."""
    raise RuntimeError(f"boom {value}")


def refuse(value: int) -> dict:
    """Refuses politely."""
    raise ToolError("value 不合理")


def hang(seconds: float) -> dict:
    """Sleeps."""
    time.sleep(seconds)
    return {"result": "late"}


def test_exceptions_tool_errors_and_timeouts_become_error_outcomes():
    tools = [Tool.from_function(explode), Tool.from_function(refuse), Tool.from_function(hang)]
    outcome = run_tool_call(tools, "explode", {"value": 3})
    assert not outcome.ok and outcome.content["error"] == "工具 explode 运行出错：RuntimeError: boom 3"
    assert run_tool_call(tools, "refuse", {"value": 3}).content == {"error": "value 不合理"}
    started = time.monotonic()
    outcome = run_tool_call(tools, "hang", {"seconds": 5}, timeout=0.2)
    assert time.monotonic() - started < 2
    assert not outcome.ok and "超时" in outcome.content["error"]
    assert run_tool_call(tools, "hang", {"seconds": 0}, timeout=2).content == {"result": "late"}


def test_schema_comes_from_the_signature(tools):
    tool = next(tool for tool in tools if tool.name == "severance_pay")
    schema = tool.parameters
    assert schema["required"] == ["monthly_wage"] and schema["additionalProperties"] is False
    assert schema["properties"]["monthly_wage"]["type"] == "number"
    assert schema["properties"]["start_date"] == {"format": "date", "type": "string",
                                                  "description": "入职日期 YYYY-MM-DD（代替 years/months）"}
    assert tool.openai()["function"]["name"] == "severance_pay"
    assert "title" not in json.dumps(schema)
