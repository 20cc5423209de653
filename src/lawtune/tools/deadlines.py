"""Limitation deadlines: 劳动仲裁时效 (one year) and 诉讼时效 (three years), counted per 民法典 (docs/tools.md).

    from lawtune.tools.deadlines import arbitration_deadline
    arbitration_deadline(known_date=date(2024, 3, 15))["result"]   # "2025-03-17" (03-15 is a Saturday)

Periods start the day after the event (民法典第二百零一条), end on the corresponding day (第二百零二条; Feb 29 →
Feb 28 in a common year) and a last day on a rest day moves to the next working day (第二百零三条). Official
public holidays and 调休 make-up days are announced year by year, so only Saturdays, Sundays and the
`extra_holidays` the caller lists are moved over; the formula text says so every time.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import Field

from lawtune.tools.periods import Day, day_text, period_last_day, weekday_text
from lawtune.tools.tool import ToolError, labels, needs_one_of, only_with, required_when_said

CIVIL_CODE = "《民法典》"
ARBITRATION_LAW = "《劳动争议调解仲裁法》"
HOLIDAY_CAVEAT = ("法定节假日和调休安排每年公布，本工具只顺延周六、周日和 extra_holidays 中列出的日期，"
                  "遇春节、国庆等法定节假日请按当年安排再核对")

ARREARS_SAID = ("拖欠", "欠薪", "欠…工资", "欠…薪水", "没发…工资", "不发…工资", "工资…没发", "工资…没给")
EMPLOYMENT_END_SAID = ("离职", "辞职", "结束", "终止", "解除", "走人", "不干了", "最后一天", "最后工作日")

Holidays = Annotated[list[Day], Field(max_length=60, description="已知的法定节假日日期列表 YYYY-MM-DD（可选）")]
PERIOD_ARTICLES = [f"{CIVIL_CODE}第二百零一条", f"{CIVIL_CODE}第二百零二条", f"{CIVIL_CODE}第二百零三条"]


def _last_day(start: date, years: int, holidays: list[date], period: str, event: str) -> tuple[date, list[str]]:
    last, unmoved = period_last_day(start, years=years, holidays=frozenset(holidays))
    steps = [f"{period}，{event}为{day_text(start)}，自次日起算，期满的对应日为{day_text(unmoved or last)}"]
    if unmoved:
        steps.append(f"该日是{weekday_text(unmoved) if unmoved.weekday() >= 5 else '法定休假日'}，"
                     f"顺延至{day_text(last)}（{weekday_text(last)}）")
    return last, steps


# a date to count from: the boolean-only call (arrears while still employed: no deadline yet) is left out, since a
# tuned model called it on questions of every kind (docs/tools.md "Measured"); such a question is answered in words
@needs_one_of(("known_date",), ("employment_end_date",))
# wages owed while employed (第二十七条第四款) in people's words, and the end of employment the clock then runs from: the
# tuned model sent the 离职 date of such a question as known_date (the same day, another rule: s34's held-out run);
# the end date belongs to that case only (any other 离职 date is when the right was infringed: known_date)
@required_when_said(wage_arrears_during_employment=ARREARS_SAID, employment_end_date=EMPLOYMENT_END_SAID)
@only_with(employment_end_date="wage_arrears_during_employment")
@labels(known_date="知道权利被侵害之日", wage_arrears_during_employment="在职期间拖欠工资时 true",
        employment_end_date="离职日")
def arbitration_deadline(
    known_date: Annotated[Day | None, Field(description="知道或者应当知道权利被侵害之日 YYYY-MM-DD")] = None,
    wage_arrears_during_employment: Annotated[bool, Field(description="劳动关系存续期间拖欠劳动报酬的争议为 true")] = False,
    employment_end_date: Annotated[Day | None, Field(description="劳动关系终止之日 YYYY-MM-DD（拖欠工资时用）")] = None,
    extra_holidays: Holidays = [],  # noqa: B006 — pydantic copies defaults; never mutated
) -> dict[str, Any]:
    """申请劳动仲裁的最后一天（劳动争议调解仲裁法第二十七条）。

    时效一年；在职期间拖欠工资自劳动关系终止起一年。"""
    articles = [f"{ARBITRATION_LAW}第二十七条"]
    if wage_arrears_during_employment:
        if employment_end_date is None:
            return {
                "result": None, "unit": "日期",
                "formula": "劳动关系存续期间因拖欠劳动报酬发生争议的，申请仲裁不受一年时效的限制；"
                           "劳动关系终止的，应当自劳动关系终止之日起一年内提出。劳动关系尚未终止，目前没有截止日。",
                "articles": articles,
            }
        start, event = employment_end_date, "在职期间拖欠劳动报酬的，劳动关系终止之日"
    else:
        if known_date is None:
            raise ToolError("缺少 known_date（知道或者应当知道权利被侵害之日）；在职期间拖欠工资的请设 "
                            "wage_arrears_during_employment=true 并给出 employment_end_date")
        if employment_end_date is not None:
            raise ToolError("employment_end_date 只用于在职期间拖欠劳动报酬的争议（wage_arrears_during_employment=true）")
        start, event = known_date, "知道或者应当知道权利被侵害之日"
    last, steps = _last_day(start, 1, extra_holidays, "仲裁时效一年", event)
    steps += ["时效因主张权利、请求救济或对方同意履行而中断的重新计算，因不可抗力等中止的，本工具未计入",
              HOLIDAY_CAVEAT]
    return {
        "result": last.isoformat(), "unit": "日期",
        "details": {"start": start.isoformat(), "weekday": weekday_text(last)},
        "formula": "；".join(steps) + "。",
        "articles": articles + PERIOD_ARTICLES,
    }


@labels(known_date="知道权利受损害之日", damage_date="权利受损害之日")
def litigation_deadline(
    known_date: Annotated[Day, Field(description="知道或者应当知道权利受到损害以及义务人之日 YYYY-MM-DD")],
    damage_date: Annotated[Day | None, Field(description="权利受到损害之日 YYYY-MM-DD（用于二十年最长保护期，可选）")] = None,
    extra_holidays: Holidays = [],  # noqa: B006
) -> dict[str, Any]:
    """起诉的诉讼时效届满日（民法典第一百八十八条）。

    三年，自知道或者应当知道权利受损害及义务人之日起；最长二十年。"""
    if damage_date is not None and damage_date > known_date:
        raise ToolError(f"damage_date {damage_date} 晚于 known_date {known_date}：不可能在受损害之前知道受损害")
    last, steps = _last_day(known_date, 3, extra_holidays, "诉讼时效三年",
                            "知道或者应当知道权利受到损害以及义务人之日")
    if damage_date is not None:
        longest, longest_steps = _last_day(damage_date, 20, extra_holidays, "最长保护期二十年", "权利受到损害之日")
        if longest < last:
            steps += longest_steps + ["超过二十年的人民法院不予保护（特殊情况可申请延长），以较早者为准"]
            last = longest
        else:
            steps.append(f"二十年最长保护期至{day_text(longest)}，晚于三年时效，不影响结果")
    steps += ["诉讼时效可因中止、中断而延长，本工具未计入；法律另有规定的依照其规定", HOLIDAY_CAVEAT]
    return {
        "result": last.isoformat(), "unit": "日期",
        "details": {"start": known_date.isoformat(), "weekday": weekday_text(last)},
        "formula": "；".join(steps) + "。",
        "articles": [f"{CIVIL_CODE}第一百八十八条"] + PERIOD_ARTICLES,
    }
