"""Figures written the way people write them, checked against the values they were made from."""

from __future__ import annotations

import random
import re
from datetime import date
from decimal import Decimal

import pytest

from lawtune.kb.numerals import to_int
from lawtune.tools.phrasing import (DATE_STYLES, amount_styles, amount_text, chinese_number, date_text,
                                    duration_styles, duration_text)


@pytest.mark.parametrize("value, style, text", [
    (8000, "arabic", "8000"), (8000, "yuan", "8000元"), (8000, "comma", "8,000元"), (8000, "chinese", "八千元"),
    (8000, "colloquial", "八千"), (8000, "wan", "0.8万"), (8000, "k", "8k"),
    (12500, "chinese", "一万二千五百元"), (12500, "colloquial", "一万二千五"), (12500, "wan", "1.25万"),
    (12500, "k", "12.5k"), (2500, "colloquial", "两千五"), (10500, "chinese", "一万零五百元"),
    (15000, "colloquial", "一万五"), (20000, "colloquial", "两万"), (6800, "colloquial", "六千八"),
    (120000, "chinese", "十二万元"),
])
def test_amounts_worked_by_hand(value, style, text):
    assert amount_text(value, style) == text


def read_amount(text: str) -> Decimal:
    """An independent reader of every amount form (the test's, not the generator's)."""
    text = text.removesuffix("元")
    if text.endswith("万") and re.fullmatch(r"[\d.]+万", text):
        return Decimal(text[:-1]) * 10000
    if text.lower().endswith("k"):
        return Decimal(text[:-1]) * 1000
    if re.fullmatch(r"[\d,]+", text):
        return Decimal(text.replace(",", ""))
    units = {"万": "千", "千": "百", "百": "十"}
    if len(text) >= 2 and text[-1] not in "十百千万" and text[-2] in units:  # 八千五 = 八千五百
        text += units[text[-2]]
    return Decimal(to_int(text))


def test_every_amount_form_reads_back_to_its_value():
    rng = random.Random(0)
    values = [rng.randrange(30, 3000) * 100 for _ in range(300)] + [rng.randrange(3000, 90000) for _ in range(100)]
    for value in values:
        for style in amount_styles(value):
            assert read_amount(amount_text(value, style)) == value, (value, style, amount_text(value, style))


def test_amount_forms_refuse_what_they_cannot_write_exactly():
    assert "wan" not in amount_styles(8050) and "k" not in amount_styles(8050)
    with pytest.raises(ValueError):
        amount_text(8050, "k")
    with pytest.raises(ValueError):
        chinese_number(0)


@pytest.mark.parametrize("years, months, style, text", [
    (3, 5, "plain", "3年5个月"), (3, 5, "ling", "3年零5个月"), (3, 5, "chinese", "三年五个月"),
    (3, 5, "chinese_ling", "三年零五个月"), (3, 5, "months", "41个月"), (3, 6, "half", "三年半"),
    (2, 0, "chinese", "两年"), (0, 8, "plain", "8个月"), (10, 2, "chinese", "十年两个月"), (0, 6, "half", "半年"),
])
def test_durations_worked_by_hand(years, months, style, text):
    assert duration_text(years, months, style) == text


def read_duration(text: str) -> int:
    """Total months of a duration text (independent reader)."""
    if text == "半年":
        return 6
    if match := re.fullmatch(r"(.+)年半", text):
        return to_int(match[1]) * 12 + 6
    match = re.fullmatch(r"(?:(.+?)年)?零?(?:(.+)个月)?", text)
    return (to_int(match[1]) if match[1] else 0) * 12 + (to_int(match[2]) if match[2] else 0)


def test_every_duration_form_reads_back_to_its_length():
    for years in range(0, 31):
        for months in range(12):
            if years == months == 0:
                continue
            for style in duration_styles(years, months):
                text = duration_text(years, months, style)
                assert read_duration(text) == years * 12 + months, (years, months, style, text)


def test_every_date_form_reads_back_to_its_day():
    for day in (date(2024, 2, 29), date(2025, 12, 1), date(2019, 1, 9)):
        for style in DATE_STYLES:
            numbers = [int(part) for part in re.findall(r"\d+", date_text(day, style))]
            assert date(*numbers) == day
