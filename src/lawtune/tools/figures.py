"""Figures as the question writes them: a tool argument may be the words of the question, read here.

    read_amount("八千")          # 8000.0   (also 8000, "8000元", "8,000元", "八千元", "一万二千五", "两千五", "0.8万", "8k")
    read_count("8个小时")        # 8        (also "十六小时", "二十八")
    read_years("3年5个月")       # 41/12    (a duration read in years: "3年", "三年零五个月", "41个月", "三年半")
    read_months("半")            # 6        (a duration read in months: "5个月", "41个月", "1年2个月", "半年")
    figure_spans("工作3年5个月，月薪八千")   # {"amount": ["八千"], "years": ["3年5个月", "3年"], "months": [...], ...}

A small model copies a span of the question far more reliably than it converts 八千 to 8000 or 三年零五个月 to
years 3 + months 5, so the calculators take each figure either as a number or as the words of the question
(docs/tools.md "Figures as written"). A duration is read in the unit of the parameter it is given to: years
"3年5个月" is 3 5/12 years, months "1年2个月" is 14 months. Every form `lawtune.tools.phrasing` writes is read back
here to the value it was made from (tests/tools). Text that is no figure raises ValueError with a message the
model can read (pydantic turns it into `monthly_wage='…': Value error, …`, and run_tool_call into an `{"error": …}`
result).

Each figure parameter's schema names its kind (`"x-figure": "amount" | "years" | "months" | "hours"`; dates have
`"format": "date"`): the lazy call grammar (lawtune.tools.constrain) lets such a parameter take only the spans of
the user's words that `figure_spans` finds for its kind, each of which its reader reads.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from lawtune.kb.numerals import DIGITS, UNITS, to_int

_UNIT_BELOW = {"万": 1000, "千": 100, "百": 10}
_CURRENCY = re.compile(r"(人民币|元|块钱|块|钱|/月|每月|一个月)$")
_COUNT_UNITS = re.compile(r"(个小时|小时|个月|个工作日|工作日|月|年|天|日|个|h)$", re.IGNORECASE)
_ARABIC = re.compile(r"^\d+(\.\d+)?$")


def chinese_value(text: str) -> int:
    """Chinese numerals as people say amounts: 八千 8000, 一万二千五 12500 (a last digit right after a unit is of the
    next unit down), 两千五 2500, 一万零五百 10500, 十六 16. ValueError if `text` is not one."""
    if not text or any(ch not in DIGITS and ch not in UNITS for ch in text):
        raise ValueError(f"not a Chinese numeral: {text!r}")
    if len(text) >= 2 and text[-1] in DIGITS and text[-1] not in "零〇" and text[-2] in _UNIT_BELOW:
        return to_int(text[:-1]) + DIGITS[text[-1]] * _UNIT_BELOW[text[-2]]
    return to_int(text)


def _number(text: str) -> Decimal:
    """Arabic (with thousands commas) or Chinese numerals, exactly (0.8万 is 8000, not 7999.999…)."""
    text = text.replace(",", "").replace("，", "").strip()
    if _ARABIC.match(text):
        return Decimal(text)
    return Decimal(chinese_value(text))


def read_amount(value: Any) -> Any:
    """An amount of yuan from a number or from the question's words; other types are left to pydantic."""
    if not isinstance(value, str):
        return value
    text = value.strip().replace(" ", "")
    while True:  # 8000元 / 八千块钱 / 八千元每月
        stripped = _CURRENCY.sub("", text)
        if stripped == text:
            break
        text = stripped
    scale = 1
    if text[-1:] in ("k", "K"):
        text, scale = text[:-1], 1000
    elif text.endswith("万") and _ARABIC.match(text[:-1].replace(",", "")):  # 0.8万; 一万二 is Chinese
        text, scale = text[:-1], 10000
    try:
        return _exact(_number(text) * scale)
    except ValueError:
        raise ValueError(f"读不出金额 {value!r}：请写数字（如 8000）或照问题原文写（如 八千、0.8万、8k）") from None


def read_count(value: Any) -> Any:
    """A count of years, months, hours or days from a number or from the question's words (41个月, 二十八, 8个小时)."""
    if not isinstance(value, str):
        return value
    text = _COUNT_UNITS.sub("", value.strip().replace(" ", ""))
    text = text[:-1] if text.endswith("零") else text  # 3年零 (the 零 of 3年零5个月)
    try:
        return _exact(_number(text))
    except ValueError:
        raise ValueError(f"读不出数目 {value!r}：请写数字（如 5）或照问题原文写（如 五个月、41个月、三年）") from None


# a duration as people write it: 3年5个月, 3年零5个月, 三年零五个月, 41个月, 三年半, 半年, 3年, 5个月
_NUM = r"(?:\d+(?:\.\d+)?|[零〇一二两三四五六七八九十百]+)"
_DURATION = re.compile(rf"^(?:(?P<years>{_NUM})年(?:零?(?P<months>{_NUM})个?月|(?P<half>半))?"
                       rf"|(?P<only_months>{_NUM})个?月|(?P<half_year>半年|半个年))$")


def duration_months(text: str) -> Decimal | None:
    """The months a written duration spans (3年5个月 → 41, 三年半 → 42, 半年 → 6, 41个月 → 41), None if `text` is none."""
    match = _DURATION.match(text.strip().replace(" ", ""))
    if not match:
        return None
    if match["half_year"]:
        return Decimal(6)
    if match["only_months"]:
        return _number(match["only_months"])
    total = _number(match["years"]) * 12
    if match["half"]:
        total += 6
    elif match["months"]:
        total += _number(match["months"])
    return total


def read_years(value: Any) -> Any:
    """Years from a number or from the question's words; a duration with months in it is read in years
    (3年5个月 → 3 5/12, 41个月 → 3 5/12, 三年半 → 3.5): the tool then counts whole months (lawtune.tools.labor)."""
    if not isinstance(value, str):
        return value
    try:
        months = duration_months(value)
        return _exact(months / 12) if months is not None else read_count(value)
    except ValueError:
        raise ValueError(f"读不出年数 {value!r}：请写数字（如 3）或照问题原文写（如 三年、3年5个月、41个月）") from None


def read_months(value: Any) -> Any:
    """Months from a number or from the question's words: 5个月, 41个月, 1年2个月 (14), 半 / 半年 (6; 三年半 =
    `{"years": "三年", "months": "半"}`)."""
    if not isinstance(value, str):
        return value
    text = value.strip().replace(" ", "")
    if text in ("半", "半年", "半个年"):
        return 6
    try:
        months = duration_months(text)
        return _exact(months) if months is not None else read_count(text)
    except ValueError:
        raise ValueError(f"读不出月数 {value!r}：请写数字（如 5）或照问题原文写（如 五个月、41个月、1年2个月）") from None


# ---- the figures a question holds, as spans of its text (the values the call grammar offers) -------------------
_CN = "零〇一二两三四五六七八九十百千万"
_DATE_SPAN = re.compile(r"\d{4}年\d{1,2}月\d{1,2}[日号]|\d{4}-\d{1,2}-\d{1,2}|\d{4}\.\d{1,2}\.\d{1,2}|\d{4}/\d{1,2}/\d{1,2}")
_ARABIC_RUN = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
# an amount: a number not followed by a unit of time, with the money words people write after it
_AMOUNT_SPAN = re.compile(rf"(?<![\d.,{_CN}])(?P<number>{_ARABIC_RUN}|[{_CN}]+)"
                          r"(?P<unit>万元|万|元|块钱|块|[kK])?(?![\d.,年月个日号天小时周点岁倍%％])")
# a duration: its whole span, and for 3年零5个月 / 三年半 also its parts (3年 + 5个月, 三年 + 半) as the tools take them
_DURATION_SPAN = re.compile(rf"(?<![\d.{_CN}])(?:(?P<years>{_NUM}年)(?:零?(?P<months>{_NUM}个?月)|(?P<half>半))?"
                            rf"|{_NUM}个?月|半年)")
_HOURS_SPAN = re.compile(rf"(?<![\d.{_CN}])(?:\d+(?:\.\d+)?|[{_CN}]+)(?:个小时|小时)")
MIN_AMOUNT = 100  # 元: below it a number is no wage (一直, 第一, 3天)
MAX_YEARS = 60


def length_parts(span: str) -> tuple[str, str] | None:
    """A length in years and months (3年5个月, 12年零4个月, 三年半) → its two parts as `figure_spans` offers them
    (("3年", "5个月"), ("三年", "半")); None for any other span."""
    match = _DURATION_SPAN.fullmatch(span)
    if match is None or not match["years"] or not (match["months"] or match["half"]):
        return None
    return match["years"], match["months"] or "半"


def figure_spans(text: str) -> dict[str, list[str]]:
    """The spans of `text` each figure kind's reader reads, in order of appearance, without repeats:
    `date` (2024年3月1日, 2024-03-01, 2024.3.1, 2024/3/1), `amount` (8000元 and 8000, 八千, 0.8万, 8k, ≥ MIN_AMOUNT),
    `years` (3年, 3年5个月, 41个月, 三年半, 半年), `months` (5个月, 41个月, 3年5个月, 半年; and 半 of 三年半),
    `hours` (8个小时, 十六小时). Dates are taken out first, so 2024年3月 is never a number of years."""
    from lawtune.tools.periods import parse_day

    found: dict[str, list[str]] = {"date": [], "amount": [], "years": [], "months": [], "hours": []}

    def add(kind: str, span: str, reader: Any, check: Any = lambda value: True) -> None:
        if span in found[kind]:
            return
        try:
            value = reader(span)
        except ValueError:
            return
        if check(value):
            found[kind].append(span)

    for match in _DATE_SPAN.finditer(text):
        if not isinstance(parse_day(match.group()), str):
            found["date"].append(match.group()) if match.group() not in found["date"] else None
    rest = _DATE_SPAN.sub("｜", text)
    for match in _AMOUNT_SPAN.finditer(rest):
        spans = [match.group(), match["number"]] + ([match["number"] + "万"] if match["unit"] == "万元" else [])
        for span in spans:
            add("amount", span, read_amount, lambda value: value >= MIN_AMOUNT)
    for match in _DURATION_SPAN.finditer(rest):
        if match.group() in ("一个月", "每个月") and re.search(r"(元|块|k|K|万|\d)$", rest[:match.start()]):
            continue  # 工资13.9k一个月: per month, not a length of service
        for kind, reader in (("years", read_years), ("months", read_months)):
            add(kind, match.group(), reader, lambda value: 0 < value <= MAX_YEARS * (12 if kind == "months" else 1))
        if match["years"] and (match["months"] or match["half"]):
            add("years", match["years"], read_years, lambda value: 0 < value <= MAX_YEARS)
            add("months", match["months"] or "半", read_months)
    for match in _HOURS_SPAN.finditer(rest):
        add("hours", match.group(), read_count, lambda value: 0 < value <= 744)
    return found


def _exact(number: Decimal) -> int | float:
    return int(number) if number == number.to_integral_value() else float(number)


def _figure(reader: Any, kind: str, figure: str) -> Any:
    # shown to the model as "a number, or the question's words"; `x-figure` tells the call grammar which spans fit
    return (BeforeValidator(reader), WithJsonSchema({"type": [kind, "string"], "x-figure": figure}))


# Argument types of the calculators: Annotated[Amount, Field(gt=0, description=...)]
Amount = Annotated[float, *_figure(read_amount, "number", "amount")]
OptionalAmount = Annotated[float | None, *_figure(read_amount, "number", "amount")]
Hours = Annotated[float, *_figure(read_count, "number", "hours")]
# years may carry months (3年5个月 = 3 5/12): the tools count whole months from them (labor.duration)
OptionalYears = Annotated[float | None, *_figure(read_years, "integer", "years")]
OptionalMonths = Annotated[int | None, *_figure(read_months, "integer", "months")]
