"""Chinese numerals as written in statute article numbers, to int and back.

    >>> to_int("一千零七十六")
    1076
    >>> to_int("十二"), to_int("二〇二"), to_int("82")
    (12, 202, 82)
    >>> to_chinese(1076)
    '一千零七十六'

Article numbers never exceed a few thousand, so 万 is accepted but nothing larger. Both the positional
form (一〇七六, as in dates) and the usual form with unit characters (一千零七十六) are read; 〇 and 零 are
the same digit; 两 counts as 二 (两百 in informal writing); a leading 十 means 一十 (十二 = 12).
"""

from __future__ import annotations

DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}

# Characters an article number may be written with (used by the regexes in laws.py and citations.py).
NUMERAL_CHARS = "".join(DIGITS) + "".join(UNITS) + "0123456789０１２３４５６７８９"

_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")


def to_int(text: str) -> int:
    """The value of an article number in Arabic digits or Chinese numerals; ValueError if it is neither."""
    text = text.strip().translate(_FULLWIDTH)
    if not text:
        raise ValueError("empty numeral")
    if text.isdigit():
        return int(text)
    if any(ch not in DIGITS and ch not in UNITS for ch in text):
        raise ValueError(f"not a Chinese numeral: {text!r}")
    if not any(ch in UNITS for ch in text):
        # positional: 一〇七六 → 1076
        return int("".join(str(DIGITS[ch]) for ch in text))
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in DIGITS:
            digit = DIGITS[ch]
        elif ch == "万":
            section = (section + (digit or 0)) * 10000
            total, section, digit = total + section, 0, None
        else:
            # a unit with no digit before it is 一 of that unit (十二 = 12, 百 alone = 100)
            section += (1 if digit is None else digit) * UNITS[ch]
            digit = None
    return total + section + (digit or 0)


def to_chinese(number: int) -> str:
    """The usual written form of 1..9999 as used in article numbers: 1076 → 一千零七十六, 12 → 十二."""
    if not 0 < number < 10000:
        raise ValueError(f"article numbers are 1..9999, got {number}")
    names = "零一二三四五六七八九"
    parts: list[str] = []
    pending_zero = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = number // value % 10
        if digit == 0:
            pending_zero = bool(parts)
            continue
        if pending_zero:
            parts.append("零")
            pending_zero = False
        parts.append(names[digit] + unit)
    text = "".join(parts)
    return text[1:] if text.startswith("一十") else text
