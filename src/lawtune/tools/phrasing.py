"""How people write figures in a Chinese question: amounts, durations and dates, each in many forms.

    from lawtune.tools.phrasing import amount_text, duration_text, date_text, chinese_number
    amount_text(8000, "chinese")         # '八千'        ("arabic" 8000, "yuan" 8000元, "comma" 8,000元,
    amount_text(8000, "wan")             # '0.8万'        "colloquial" 八千, "k" 8k)
    amount_text(12500, "colloquial")     # '一万二千五'
    duration_text(3, 5, "ling")          # '3年零5个月'   ("plain" 3年5个月, "chinese" 三年五个月, "months" 41个月, ...)
    date_text(date(2024, 3, 1), "iso")   # '2024-03-01'

The tool-use generator (`lawtune.tools.generate`) writes every question from the true arguments through
these functions, so it always knows the value behind a phrase: tests check each form against the value it
was made from (tests/tools/test_phrasing.py). Only forms a reader cannot misread are produced: an amount is
a whole number of yuan (in 万 and k forms a multiple of 100, so the decimal is short and exact).
"""

from __future__ import annotations

from datetime import date

from lawtune.kb.numerals import to_chinese

AMOUNT_STYLES = ("arabic", "yuan", "comma", "chinese", "colloquial", "wan", "k")
DURATION_STYLES = ("plain", "ling", "chinese", "chinese_ling", "months", "half")
DATE_STYLES = ("chinese", "chinese_hao", "iso", "dots", "slashes")


def chinese_number(number: int, colloquial: bool = False) -> str:
    """1..99,999,999 in Chinese numerals: 12500 → 一万二千五百 (colloquial: 一万二千五, and 2000 → 两千)."""
    if not 0 < number < 100_000_000:
        raise ValueError(f"chinese_number takes 1..99999999, got {number}")
    high, low = divmod(number, 10_000)
    parts = []
    if high:
        parts.append(to_chinese(high) + "万")
    if low:
        # a gap inside the number is read as 零: 10500 → 一万零五百
        parts.append(("零" if high and low < 1000 else "") + to_chinese(low))
    text = "".join(parts)
    if not colloquial:
        return text
    # 八千五百 → 八千五, 一万二千 → 一万二: a last digit right after the next larger unit drops its own unit
    if len(text) >= 3 and text[-1] in "十百千" and text[-3] in "十百千万" and text[-2] not in "零十百千万":
        if _unit_below(text[-3]) == text[-1]:
            text = text[:-1]
    if text[0] == "二" and len(text) > 1 and text[1] in "千万":  # 两千, 两万 (二千 is the written form)
        text = "两" + text[1:]
    return text


def _unit_below(unit: str) -> str:
    return {"万": "千", "千": "百", "百": "十", "十": ""}[unit]


def amount_text(value: int, style: str) -> str:
    """A whole amount of yuan written in `style` (one of AMOUNT_STYLES). The unit 元 is part of some styles;
    questions add 元 / 块 / 月薪 around the others themselves."""
    if value != int(value) or value <= 0:
        raise ValueError(f"amounts are positive whole yuan, got {value}")
    value = int(value)
    if style == "arabic":
        return str(value)
    if style == "yuan":
        return f"{value}元"
    if style == "comma":
        return f"{value:,}元"
    if style == "chinese":
        return chinese_number(value) + "元"
    if style == "colloquial":
        return chinese_number(value, colloquial=True)
    if style in ("wan", "k"):
        if value % 100:
            raise ValueError(f"the {style} form needs a multiple of 100, got {value}")
        return f"{value / 10000:g}万" if style == "wan" else f"{value / 1000:g}k"
    raise ValueError(f"unknown amount style {style!r}; use one of {', '.join(AMOUNT_STYLES)}")


def amount_styles(value: int) -> tuple[str, ...]:
    """The styles that can write `value` exactly (万 and k only for multiples of 100, and k below 100k)."""
    styles = [s for s in AMOUNT_STYLES if s not in ("wan", "k") or value % 100 == 0]
    return tuple(s for s in styles if s != "k" or value < 100_000)


def small_chinese(number: int) -> str:
    """Counts of years or months as spoken: 2 → 两, 12 → 十二, 0 → 零."""
    if number == 0:
        return "零"
    return "两" if number == 2 else to_chinese(number)


def duration_text(years: int, months: int, style: str) -> str:
    """A span of `years` years and `months` (0..11) months in `style` (one of DURATION_STYLES)."""
    if years < 0 or not 0 <= months < 12 or years == months == 0:
        raise ValueError(f"a duration needs years ≥ 0 and 0 ≤ months < 12, not both 0; got {years}, {months}")
    if style == "months":
        return f"{years * 12 + months}个月"
    if style == "half":
        if months != 6:
            raise ValueError("the 'half' form (三年半) needs 6 months")
        return f"{small_chinese(years)}年半" if years else "半年"
    chinese = style in ("chinese", "chinese_ling")
    say = small_chinese if chinese else str
    if months == 0:
        return f"{say(years)}年"
    if years == 0:
        return f"{say(months)}个月"
    joiner = "年零" if style in ("ling", "chinese_ling") else "年"
    if style not in DURATION_STYLES:
        raise ValueError(f"unknown duration style {style!r}; use one of {', '.join(DURATION_STYLES)}")
    return f"{say(years)}{joiner}{say(months)}个月"


def duration_styles(years: int, months: int) -> tuple[str, ...]:
    """The styles that fit this span ('half' only for 6 months; the 零 forms only with both parts)."""
    styles = [s for s in DURATION_STYLES if s != "half" or months == 6]
    if not (years and months):
        styles = [s for s in styles if s not in ("ling", "chinese_ling")]
    return tuple(styles)


def date_text(day: date, style: str) -> str:
    """A calendar date in `style` (one of DATE_STYLES)."""
    if style == "chinese":
        return f"{day.year}年{day.month}月{day.day}日"
    if style == "chinese_hao":
        return f"{day.year}年{day.month}月{day.day}号"
    if style == "iso":
        return day.isoformat()
    if style == "dots":
        return f"{day.year}.{day.month}.{day.day}"
    if style == "slashes":
        return f"{day.year}/{day.month}/{day.day}"
    raise ValueError(f"unknown date style {style!r}; use one of {', '.join(DATE_STYLES)}")
