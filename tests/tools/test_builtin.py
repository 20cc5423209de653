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
    ({"monthly_wage": "八千多", "years": 1}, "读不出金额"),  # "八千" itself is read (lawtune.tools.figures)
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
    assert schema["properties"]["monthly_wage"]["type"] == ["number", "string"]  # 8000 or the question's words
    assert schema["properties"]["start_date"] == {"format": "date", "type": "string",
                                                  "description": "入职日期 YYYY-MM-DD（代替 years/months）",
                                                  "x-label": "入职日"}
    assert tool.openai()["function"]["name"] == "severance_pay"
    assert "title" not in json.dumps(schema)


def test_leap_day_start_and_month_ends(tools):
    # 2020-02-29 + 1 year has no Feb 29: the year is full at 2021-02-28 (exclusive), i.e. last day 2021-02-27
    assert run(tools, "severance_pay", monthly_wage=1000, start_date="2020-02-29",
               end_date="2021-02-27")["details"]["months_of_pay"] == 1.0
    assert run(tools, "severance_pay", monthly_wage=1000, start_date="2020-02-29",
               end_date="2021-02-28")["details"]["months_of_pay"] == 1.5


def test_service_before_2008_is_flagged(tools):
    content = run(tools, "severance_pay", monthly_wage=5000, start_date="2005-01-01", end_date="2010-12-31")
    assert content["result"] == 30000 and "《劳动合同法》第九十七条" in content["articles"]
    assert "2008年1月1日前" in content["formula"]


# -- double_wage_no_contract (第八十二条; 实施条例第六、七条: 满一个月的次日起, 至满一年的前一日) ----------------------------
@pytest.mark.parametrize(("months", "result"), [(0, 0), (1, 0), (2, 6000), (8, 42000), (12, 66000), (30, 66000)])
def test_double_wage_by_months(tools, months, result):
    assert run(tools, "double_wage_no_contract", monthly_wage=6000, months_without_contract=months)["result"] == result


@pytest.mark.parametrize(("stop", "result"), [
    ({"contract_date": "2023-03-20"}, 0),        # signed within the first month
    ({"contract_date": "2023-04-01"}, 0),        # signed on the first day the double wage would start
    ({"contract_date": "2023-04-02"}, 200),      # one day of April (30 days): 6000 / 30
    ({"contract_date": "2023-06-16"}, 15000),    # 04-01..06-15: 2 months + 15/30 of June
    ({"end_date": "2023-12-31"}, 54000),         # left after 10 months: 04-01..12-31 = 9 months
    ({"end_date": "2024-05-01"}, 66000),         # past a year: 04-01..2024-02-29 = 11 months
])
def test_double_wage_by_dates(tools, stop, result):
    content = run(tools, "double_wage_no_contract", monthly_wage=6000, start_date="2023-03-01", **stop)
    assert content["result"] == result


def test_double_wage_past_a_year_cites_the_deemed_open_ended_contract(tools):
    content = run(tools, "double_wage_no_contract", monthly_wage=6000, start_date="2023-03-01",
                  contract_date="2024-06-01")
    assert content["details"]["months"] == 11 and "《劳动合同法》第十四条" in content["articles"]
    assert "《劳动合同法》第八十二条" == content["articles"][0]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"monthly_wage": 6000}, "缺少期限"),
    ({"monthly_wage": 6000, "start_date": "2023-03-01"}, "contract_date"),
    ({"monthly_wage": 6000, "start_date": "2023-03-01", "contract_date": "2023-01-01"}, "早于"),
    ({"monthly_wage": 6000, "months_without_contract": 3, "start_date": "2023-03-01"}, "只用一种方式"),
])
def test_double_wage_bad_arguments(tools, arguments, message):
    outcome = run_tool_call(tools, "double_wage_no_contract", arguments)
    assert not outcome.ok and message in outcome.content["error"]


# -- overtime_pay (劳动法第四十四条; 日工资 = 月工资 ÷ 21.75, 小时工资 = 日工资 ÷ 8) -----------------------------------
def test_overtime_three_rates(tools):
    # 8700 / 21.75 = 400 a day, 50 an hour: 10 h × 50 × 1.5 + 8 h × 50 × 2 + 8 h × 50 × 3 = 750 + 800 + 1200
    content = run(tools, "overtime_pay", monthly_wage=8700, weekday_hours=10, rest_day_hours=8, holiday_hours=8)
    assert content["result"] == 2750
    assert content["details"] == {"hourly_wage": 50, "weekday": 750, "rest_day": 800, "holiday": 1200}
    assert content["articles"][0] == "《劳动法》第四十四条"


def test_overtime_rounds_once_at_the_end(tools):
    # 5000 / 21.75 / 8 = 28.7356…; × 3 h × 1.5 = 129.3103… → 129.31 (not 28.74 × 4.5 = 129.33)
    assert run(tools, "overtime_pay", monthly_wage=5000, weekday_hours=3)["result"] == 129.31
    assert run(tools, "overtime_pay", monthly_wage=5000, holiday_hours=0.5)["result"] == 43.1


def test_overtime_needs_hours(tools):
    outcome = run_tool_call(tools, "overtime_pay", {"monthly_wage": 5000})
    assert not outcome.ok and "没有加班小时数" in outcome.content["error"]
    assert not run_tool_call(tools, "overtime_pay", {"monthly_wage": 5000, "weekday_hours": -2}).ok


# -- arbitration_deadline / litigation_deadline (民法典第二百零一至二百零三条) ----------------------------------------
@pytest.mark.parametrize(("known", "holidays", "deadline"), [
    ("2024-03-15", [], "2025-03-17"),   # 2025-03-15 is a Saturday → Monday
    ("2024-02-29", [], "2025-02-28"),   # leap day: no 2025-02-29 → month end (a Friday)
    ("2023-01-31", [], "2024-01-31"),   # month end → corresponding day (a Wednesday)
    ("2023-10-01", [f"2024-10-0{d}" for d in range(1, 8)], "2024-10-08"),  # caller-listed 国庆 holidays
])
def test_arbitration_deadline(tools, known, holidays, deadline):
    content = run(tools, "arbitration_deadline", known_date=known, extra_holidays=holidays)
    assert content["result"] == deadline
    assert content["articles"][0] == "《劳动争议调解仲裁法》第二十七条"
    assert "只顺延周六、周日" in content["formula"]


def test_arbitration_for_wage_arrears_runs_from_the_end_of_employment(tools):
    content = run(tools, "arbitration_deadline", wage_arrears_during_employment=True,
                  employment_end_date="2024-06-30")
    assert content["result"] == "2025-06-30"
    open_ended = run(tools, "arbitration_deadline", wage_arrears_during_employment=True)
    assert open_ended["result"] is None and "不受一年时效的限制" in open_ended["formula"]
    outcome = run_tool_call(tools, "arbitration_deadline", {})
    assert not outcome.ok and "known_date" in outcome.content["error"]


def test_litigation_deadline(tools):
    # 2024-02-29 + 3 years → 2027-02-28 (no 29th), a Sunday → 2027-03-01
    content = run(tools, "litigation_deadline", known_date="2024-02-29")
    assert content["result"] == "2027-03-01" and content["articles"][0] == "《民法典》第一百八十八条"
    assert run(tools, "litigation_deadline", known_date="2023-06-15")["result"] == "2026-06-15"  # a Monday


def test_litigation_twenty_year_limit(tools):
    # damage 2003-01-01 → 20 years end 2023-01-01 (Sunday → 01-02), earlier than 2020-01-10 + 3 years
    assert run(tools, "litigation_deadline", known_date="2020-01-10", damage_date="2003-01-01")["result"] == "2023-01-02"
    assert run(tools, "litigation_deadline", known_date="2020-01-10", damage_date="2019-01-01")["result"] == "2023-01-10"
    assert not run_tool_call(tools, "litigation_deadline", {"known_date": "2020-01-10", "damage_date": "2021-01-01"}).ok


# -- probation_limits (劳动合同法第十九、二十条) ----------------------------------------------------------------------
@pytest.mark.parametrize(("arguments", "limit"), [
    ({"start_date": "2024-01-01", "end_date": "2024-03-30"}, 0),   # 2 months 30 days: 不满三个月
    ({"start_date": "2024-01-01", "end_date": "2024-03-31"}, 1),   # exactly 3 months: 三个月以上
    ({"contract_months": 11}, 1),
    ({"contract_years": 1}, 2),                                    # 一年以上
    ({"contract_years": 2, "contract_months": 11}, 2),
    ({"contract_years": 3}, 6),                                    # 三年以上
    ({"open_ended": True}, 6),
    ({"task_based": True}, 0),
])
def test_probation_limit(tools, arguments, limit):
    assert run(tools, "probation_limits", **arguments)["result"]["max_probation_months"] == limit


def test_probation_wage_floor(tools):
    content = run(tools, "probation_limits", contract_years=3, agreed_wage=5000, local_minimum_wage=2300)
    assert content["result"] == {"max_probation_months": 6, "min_probation_wage": 4000}  # 5000 × 80%
    assert "《劳动合同法》第二十条" in content["articles"]
    low = run(tools, "probation_limits", contract_years=1, agreed_wage=2500, local_minimum_wage=2300)
    assert low["result"]["min_probation_wage"] == 2300  # 2000 would be below the local minimum
    assert run(tools, "probation_limits", contract_years=1)["result"]["min_probation_wage"] is None


def test_probation_bad_arguments(tools):
    assert "缺少期限" in run_tool_call(tools, "probation_limits", {}).content["error"]
    assert not run_tool_call(tools, "probation_limits", {"open_ended": True, "contract_years": 3}).ok
    assert not run_tool_call(tools, "probation_limits", {"open_ended": True, "task_based": True}).ok


# -- annual_leave_days (职工带薪年休假条例第三条) -------------------------------------------------------------------
@pytest.mark.parametrize(("years", "days"), [(0.5, 0), (1, 5), (9.9, 5), (10, 10), (19, 10), (20, 15), (35, 15)])
def test_annual_leave_by_years(tools, years, days):
    assert run(tools, "annual_leave_days", cumulative_work_years=years)["result"] == days


@pytest.mark.parametrize(("first", "as_of", "days"), [
    ("2014-07-01", "2024-06-30", 5),     # one day short of 10 years
    ("2014-07-01", "2024-07-01", 10),
    ("2004-02-29", "2024-02-28", 10),    # leap day: 20 years are full on 2024-02-29
    ("2004-02-29", "2024-02-29", 15),
    ("2000-02-29", "2001-02-28", 5),     # no 2001-02-29: the year is full at the month end
])
def test_annual_leave_by_dates(tools, first, as_of, days):
    assert run(tools, "annual_leave_days", first_work_date=first, as_of=as_of)["result"] == days


def test_annual_leave_bad_arguments(tools):
    assert not run_tool_call(tools, "annual_leave_days", {}).ok
    assert not run_tool_call(tools, "annual_leave_days", {"cumulative_work_years": 3, "first_work_date": "2020-01-01"}).ok
    assert not run_tool_call(tools, "annual_leave_days", {"first_work_date": "2030-01-01", "as_of": "2024-01-01"}).ok


# -- every tool ------------------------------------------------------------------------------------------------
def test_builtin_names_and_schemas(tools):
    assert [tool.name for tool in tools] == [
        "severance_pay", "double_wage_no_contract", "overtime_pay", "arbitration_deadline", "litigation_deadline",
        "probation_limits", "annual_leave_days"]
    for tool in tools:
        assert tool.description and tool.parameters["type"] == "object"
        json.dumps(tool.openai(), ensure_ascii=False)  # serialisable as sent to the model and the API


# -- knowledge-base tools -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kb_tools(tmp_path_factory):
    from lawtune.kb import open_store
    from lawtune.kb.build import build
    from lawtune.kb.retrieval import Retriever

    path = tmp_path_factory.mktemp("kb") / "kb.sqlite"
    build([], path)  # the bundled laws
    store = open_store(path)
    yield builtin_tools(kb=Retriever(store))  # what `serve --tools builtin --kb` gives them: rag.retriever
    store.close()


@pytest.mark.parametrize(("law", "article"), [
    ("劳动合同法", "第四十七条"), ("《中华人民共和国劳动合同法》", 47), ("劳动合同法", "47"), ("劳动合同法", "四十七")])
def test_lookup_article(kb_tools, law, article):
    content = run(kb_tools, "lookup_article", law=law, article=article)
    assert content["result"].startswith("第四十七条 经济补偿按劳动者在本单位工作的年限")
    assert content["articles"] == ["《劳动合同法》第四十七条"]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"law": "劳动合同法", "article": "第九百条"}, "没有第九百条"),
    ({"law": "劳动合同法", "article": "第x条"}, "看不懂条号"),
    ({"law": "火星法", "article": 1}, "没有名为 '火星法' 的法律"),
    ({"law": "劳动合同法"}, "缺少参数 article"),
])
def test_lookup_article_errors(kb_tools, arguments, message):
    outcome = run_tool_call(kb_tools, "lookup_article", arguments)
    assert not outcome.ok and message in outcome.content["error"]


def test_search_law(kb_tools):
    content = run(kb_tools, "search_law", query="休息日安排劳动者工作又不能安排补休", k=2)
    assert len(content["result"]) == 2
    assert content["result"][0]["article"] == "《劳动法》第四十四条" == content["articles"][0]
    assert not run_tool_call(kb_tools, "search_law", {"query": "加班", "k": 50}).ok


@pytest.mark.parametrize("written", ["2024-03-15", "2024/3/15", "2024.03.15", "2024年3月15日", "2024 年 3 月 15 号"])
def test_dates_written_the_usual_ways_are_read(tools, written):
    assert run(tools, "arbitration_deadline", known_date=written)["result"] == "2025-03-17"


def test_an_impossible_date_names_the_field(tools):
    outcome = run_tool_call(tools, "arbitration_deadline", {"known_date": "2023年2月30日"})
    assert not outcome.ok and "known_date" in outcome.content["error"]
    outcome = run_tool_call(tools, "arbitration_deadline", {"known_date": "去年三月"})
    assert not outcome.ok and "known_date" in outcome.content["error"]
