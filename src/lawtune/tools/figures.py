"""Figures as the question writes them: a tool argument may be the words of the question, read here.

    read_amount("八千")   # 8000.0   (also 8000, "8000元", "8,000元", "八千元", "一万二千五", "两千五", "0.8万", "8k")
    read_count("五个月")  # 5        (also "41个月", "3年", "二十八", "8个小时", "十六小时")
    read_months("半")     # 6        (三年半 = {"years": "三年", "months": "半"}; "半年" too)

A small model copies a span of the question far more reliably than it converts 八千 to 8000 or 三年零五个月 to
years 3 + months 5, so the calculators take each figure either as a number or as the words of the question (docs/tools.md
"Figures as written"). Every form `lawtune.tools.phrasing` writes is read back here to the value it was made from
(tests/tools/test_figures.py). Text that is no figure raises ValueError with a message the model can read (pydantic
turns it into `monthly_wage='…': Value error, …`, and run_tool_call into an `{"error": …}` result).
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


def read_months(value: Any) -> Any:
    """Months as `read_count`, and 半 / 半年 (the 半 of 三年半) as 6."""
    if isinstance(value, str) and value.strip() in ("半", "半年", "半个年"):
        return 6
    return read_count(value)


def _exact(number: Decimal) -> int | float:
    return int(number) if number == number.to_integral_value() else float(number)


def _figure(reader: Any, kind: str) -> Any:
    # shown to the model (and to the call grammar) as "a number, or the question's words"
    return (BeforeValidator(reader), WithJsonSchema({"type": [kind, "string"]}))


# Argument types of the calculators: Annotated[Amount, Field(gt=0, description=...)]
Amount = Annotated[float, *_figure(read_amount, "number")]
OptionalAmount = Annotated[float | None, *_figure(read_amount, "number")]
Count = Annotated[float, *_figure(read_count, "number")]
OptionalCount = Annotated[float | None, *_figure(read_count, "number")]
OptionalWholeCount = Annotated[int | None, *_figure(read_count, "integer")]
OptionalMonths = Annotated[int | None, *_figure(read_months, "integer")]
