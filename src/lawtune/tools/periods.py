"""Calendar arithmetic for the legal tools: month steps, lengths of service, and statutory period ends.

    add_months(date(2024, 1, 31), 1)           # 2024-02-29 (no 31st: the month's last day)
    service_length(date(2020, 3, 1), date(2023, 7, 31))   # Span(years=3, months=5, days=0)
    period_last_day(date(2024, 2, 29), years=1) # (2025-02-28, moved from None)

Lengths of service count both the first and the last day worked (2020-03-01 to 2020-08-31 is six full
months). Statutory periods follow 民法典第二百零一条 (the start day is not counted), 第二百零二条 (the period
ends on the corresponding day of the last month, or that month's last day when it has none) and 第二百零三条
(a last day on a public holiday moves to the next working day). Official public holidays and their
make-up working days (调休) are published year by year, so this module cannot know them: it moves only a last
day that falls on a Saturday or Sunday, plus any extra holiday dates the caller passes, and says so.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator


def add_months(day: date, months: int) -> date:
    """The same day `months` months later (or earlier); the month's last day when that day does not exist."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Span:
    years: int
    months: int  # 0..11
    days: int    # days left after the last full month

    @property
    def total_months(self) -> int:
        return self.years * 12 + self.months

    def describe(self) -> str:
        parts = [f"{self.years}年" if self.years else "", f"{self.months}个月" if self.months else "",
                 f"{self.days}天" if self.days else ""]
        return "".join(parts) or "0天"


def months_and_days(start: date, end_exclusive: date) -> tuple[int, int, int]:
    """(full months, leftover days, length in days of the month the leftover days fall in) in [start, end)."""
    months = max(0, (end_exclusive.year - start.year) * 12 + end_exclusive.month - start.month)
    while months > 0 and add_months(start, months) > end_exclusive:
        months -= 1
    reached = add_months(start, months)
    return months, (end_exclusive - reached).days, (add_months(start, months + 1) - reached).days


def service_length(start: date, last_day: date) -> Span:
    """Length of service from the first day worked to the last day worked, both included."""
    months, days, _ = months_and_days(start, last_day + timedelta(days=1))
    return Span(months // 12, months % 12, days)


def is_weekend(day: date) -> bool:
    return day.weekday() >= 5


def period_last_day(start: date, years: int = 0, months: int = 0,
                    holidays: frozenset[date] = frozenset()) -> tuple[date, date | None]:
    """(last day of the period, the unmoved last day if 第二百零三条 moved it else None).

    The period starts the day after `start` (第二百零一条) and ends on the corresponding day (第二百零二条);
    a last day on a weekend or in `holidays` moves to the next day that is neither (第二百零三条).
    """
    last = add_months(start, years * 12 + months)
    moved = last
    while is_weekend(moved) or moved in holidays:
        moved += timedelta(days=1)
    return moved, (last if moved != last else None)


def day_text(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


WEEKDAYS = "一二三四五六日"


def weekday_text(day: date) -> str:
    return f"星期{WEEKDAYS[day.weekday()]}"


_WRITTEN_DAY = re.compile(r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?\s*$")


def parse_day(value: Any) -> Any:
    """2024-03-15, 2024/3/15, 2024.3.15 and 2024年3月15日 as a date (a model writes all of them); anything else
    is left for pydantic to accept or reject with its own message."""
    if isinstance(value, str):
        match = _WRITTEN_DAY.match(value)
        if match:
            try:
                return date(*(int(part) for part in match.groups()))
            except ValueError:
                return value  # 2023-02-30: pydantic names the field and says why
    return value


# A date argument of a tool: shown to the model as {"type": "string", "format": "date"}, read leniently.
Day = Annotated[date, BeforeValidator(parse_day)]
