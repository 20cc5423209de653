"""Law names in free text: full names, short names (no 中华人民共和国), common aliases; longest match wins.

    names = LawNames(["中华人民共和国劳动合同法", "中华人民共和国劳动法"])
    names.resolve("劳动合同法")             # '中华人民共和国劳动合同法'
    names.find("依据劳动合同法第82条")      # [(2, 7, '中华人民共和国劳动合同法')]

Matching is a scan with candidates indexed by first character (fast with the ~1,500 names of all of
LawRefBook, where one big regex alternation is not).
"""

from __future__ import annotations

from collections.abc import Iterable

from lawtune.kb.laws import PRC_PREFIX, short_name

# Everyday abbreviations → short name. Only unambiguous ones; a wrong alias would turn a real citation into
# a false verdict.
ALIASES = {
    "消法": "消费者权益保护法",
    "消保法": "消费者权益保护法",
    "道交法": "道路交通安全法",
    "民诉法": "民事诉讼法",
    "刑诉法": "刑事诉讼法",
    "行诉法": "行政诉讼法",
    "劳动合同法实施细则": "劳动合同法实施条例",
    "个税法": "个人所得税法",
}

_TRANSLATE = str.maketrans({"(": "（", ")": "）", "〈": "《", "〉": "》", " ": None, "\u3000": None})


def normalize(name: str) -> str:
    """Half-width parentheses → full-width, no spaces: the form LawRefBook titles use."""
    return name.strip().translate(_TRANSLATE)


class LawNames:
    def __init__(self, full_names: Iterable[str], aliases: dict[str, str] = ALIASES):
        self._to_full: dict[str, str] = {}
        for full in full_names:
            full = normalize(full)
            short = short_name(full)
            self._to_full.setdefault(full, full)
            self._to_full.setdefault(short, full)
            self._to_full.setdefault(PRC_PREFIX + short, full)
        for alias, short in aliases.items():
            if short in self._to_full:
                self._to_full.setdefault(alias, self._to_full[short])
        self._by_first: dict[str, list[str]] = {}
        for name in sorted(self._to_full, key=len, reverse=True):
            if len(name) >= 2:
                self._by_first.setdefault(name[0], []).append(name)

    def names(self) -> list[str]:
        """Every name, alias and short form this resolves (what `find` can match)."""
        return list(self._to_full)

    def __contains__(self, name: str) -> bool:
        return self.resolve(name) is not None

    def resolve(self, name: str) -> str | None:
        """The full name a name or alias stands for, or None."""
        name = normalize(name)
        return self._to_full.get(name) or self._to_full.get(short_name(name))

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, full name) of each name in text, left to right, longest match, not overlapping."""
        found: list[tuple[int, int, str]] = []
        i = 0
        while i < len(text):
            for name in self._by_first.get(text[i], ()):
                if text.startswith(name, i):
                    found.append((i, i + len(name), self._to_full[name]))
                    i += len(name)
                    break
            else:
                i += 1
        return found
