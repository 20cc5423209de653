"""Find the law citations in an answer and give each a verdict against a knowledge base's laws.

    from lawtune.kb import open_store
    from lawtune.kb.citations import CitationChecker
    with open_store("kb.sqlite") as kb:
        checker = CitationChecker(kb.catalog())
    for verdict in checker.check("依据《劳动合同法》第八十二条和合同法第52条……"):
        print(verdict.citation.text, verdict.verdict, verdict.detail)
    summary = checker.summarize(["answer 1", "answer 2"])  # CheckSummary: counts, precision, ...

What counts as a citation: `《name》第N条` (any name in 《》), a known law name without brackets followed by
`第N条` (longest match, aliases, 中华人民共和国 optional), Arabic or Chinese numerals, 之N, `第N条第M款/项`
(= article N), lists `第N条、第M条` and ranges `第N条至第M条` (both ends are checked). A bracketed name with
no article after it counts as a citation of the law alone when it is a known law or looks like one (ends in
法, 条例, 规定, 解释, 办法, 决定, …): 《中华人民共和国丧葬保险法》 is one; 《离婚协议书》 is not.

Verdicts (relative to the laws in the knowledge base: build it from all of LawRefBook for full coverage):
- `ok`: the article exists in the law's current version (or the law is cited alone and is in force);
- `outdated`: the article exists only in an older version held in the KB;
- `repealed`: the law is no longer in force (a later law's text says so, or repeals.STATIC_REPEALED);
- `nonexistent_article`: the law exists, that article number does not (in any version);
- `unknown_law`: no law of that name in the KB.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from lawtune.kb.names import LawNames, normalize
from lawtune.kb.numerals import NUMERAL_CHARS, to_int
from lawtune.kb.store import Catalog

VERDICTS = ("ok", "outdated", "repealed", "nonexistent_article", "unknown_law")

_N = rf"[{NUMERAL_CHARS}]+"
_REF = rf"第\s*({_N})\s*条(?:之({_N}))?(?:第?[（(]?{_N}[)）]?[款项])*"
_SEP = r"\s*(?:至|到|、|，|,|和|及|以及|或者|或|与|-|—|～|~)\s*"
REF_RE = re.compile(_REF)
# article references right after a law name: 》 / 的规定 / 规定 may sit between
# (民法典 may be cited by 编: 《民法典》婚姻家庭编第一千零七十六条)
REFS_RE = re.compile(rf"[》\s]*(?:[\u4e00-\u9fff]{{1,6}}编)?(?:的规定|规定的|规定|的)?\s*{_REF}(?:{_SEP}{_REF})*")
BRACKETED_RE = re.compile(r"《([^《》\n]{1,60})》")
LAW_LIKE_RE = re.compile(r"(法|法典|条例|规定|解释|办法|细则|决定|规则|通则)(（[^（）]*）)?$")


@dataclass(frozen=True)
class Citation:
    text: str  # as written: 《劳动合同法》第八十二条
    name: str  # law name as written, without 《》
    law_full: str | None  # what the name resolves to in the KB (or the repealed table), None if unknown
    article: int | None  # None: the law cited alone
    sub: int = 0
    start: int = 0  # offset in the answer


@dataclass(frozen=True)
class Verdict:
    citation: Citation
    verdict: str  # one of VERDICTS
    detail: str = ""

    def to_json(self) -> dict:
        return {**asdict(self.citation), "verdict": self.verdict, "detail": self.detail}


@dataclass
class CheckSummary:
    answers: int = 0
    answers_with_citations: int = 0
    citations: int = 0
    verdicts: Counter = field(default_factory=Counter)

    @property
    def precision(self) -> float:
        """ok / all citations (0 when there are none)."""
        return self.verdicts["ok"] / self.citations if self.citations else 0.0

    @property
    def nonexistent_rate(self) -> float:
        """(nonexistent_article + unknown_law) / all citations."""
        bad = self.verdicts["nonexistent_article"] + self.verdicts["unknown_law"]
        return bad / self.citations if self.citations else 0.0

    def add(self, verdicts: list["Verdict"]) -> None:
        """Count one answer's verdicts."""
        self.answers += 1
        self.answers_with_citations += bool(verdicts)
        self.citations += len(verdicts)
        self.verdicts.update(v.verdict for v in verdicts)

    def to_json(self) -> dict:
        return {"answers": self.answers, "answers_with_citations": self.answers_with_citations,
                "citations": self.citations, "verdicts": {v: self.verdicts[v] for v in VERDICTS},
                "citation_precision": round(self.precision, 4), "nonexistent_rate": round(self.nonexistent_rate, 4)}


def find_citations(text: str, names: LawNames) -> list[Citation]:
    """Every citation in text, in order (see the module docstring for what counts)."""
    found: list[Citation] = []
    bracketed: list[tuple[int, int]] = []  # spans in order, never overlapping: bisect finds the one around a name
    for match in BRACKETED_RE.finditer(text):
        bracketed.append(match.span())
        name = normalize(match.group(1))
        law_full = names.resolve(name)
        refs = _refs_after(text, match.end(), match.start(), name, law_full)
        if refs:
            found.extend(refs)
        elif law_full or LAW_LIKE_RE.search(name):
            found.append(Citation(match.group(0), name, law_full, None, 0, match.start()))
    for start, end, law_full in names.find(text):
        around = bisect.bisect_right(bracketed, (start, math.inf)) - 1
        if around >= 0 and start < bracketed[around][1]:
            continue  # already read as a bracketed name
        found.extend(_refs_after(text, end, start, text[start:end], law_full))
    return sorted(found, key=lambda c: c.start)


def _refs_after(text: str, pos: int, start: int, name: str, law_full: str | None) -> list[Citation]:
    span = REFS_RE.match(text, pos)
    if not span:
        return []
    return [
        Citation(text[start:span.end()], name, law_full, to_int(ref.group(1)),
                 to_int(ref.group(2)) if ref.group(2) else 0, start)
        for ref in REF_RE.finditer(text, pos, span.end())
    ]


class CitationChecker:
    """Verdicts for citations against one catalog (`store.catalog()`); reusable across many answers."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.names = LawNames([*catalog.versions, *catalog.repealed])

    def citations(self, text: str) -> list[Citation]:
        return find_citations(text, self.names)

    def check(self, text: str) -> list[Verdict]:
        return [self.verdict(c) for c in self.citations(text)]

    def verdict(self, citation: Citation) -> Verdict:
        law = citation.law_full
        versions = self.catalog.versions.get(law, []) if law else []
        current = self.catalog.current(law) if law else None
        if law in self.catalog.repealed and current is None:
            return Verdict(citation, "repealed", f"repealed by {self.catalog.repealed[law]}")
        if not versions:
            return Verdict(citation, "unknown_law", f"no law named {citation.name} in the knowledge base")
        if current is None:
            return Verdict(citation, "repealed", f"no version of {law} is in force")
        if citation.article is None:
            return Verdict(citation, "ok", f"{law} ({current.version})")
        ref = (citation.article, citation.sub)
        if ref in current.articles:
            return Verdict(citation, "ok", f"{law} ({current.version})")
        older = [v.version for v in versions if ref in v.articles]
        if older:
            return Verdict(citation, "outdated", f"only in the {', '.join(older)} version; current is {current.version}")
        last = max(a for a, _ in current.articles)
        return Verdict(citation, "nonexistent_article", f"{law} ({current.version}) has articles 1–{last}")

    def summarize(self, answers: Iterable[str]) -> CheckSummary:
        """The summary of a list of answers: part of the Python API (docs/knowledge-base.md). lawtune's own
        callers (`kb check`, eval's RAG metrics) keep each answer's verdicts too, so they add to a
        `CheckSummary` themselves."""
        summary = CheckSummary()
        for answer in answers:
            summary.add(self.check(answer))
        return summary
