"""The knowledge-store interface: what every backend (sqlite_store.py, postgres_store.py) provides.

    from lawtune.kb import open_store
    with open_store("kb.sqlite") as kb:
        for hit in kb.text_search("拖欠 工资", k=5):    # plain full-text ranking; users search via retrieval.Retriever
            print(hit.item.cite(), hit.score, hit.item.text[:60])
        item = kb.lookup("劳动合同法", 82)           # newest current version; None if absent
        catalog = kb.catalog()                       # what the citation check needs

A backend is any class with the methods of `KnowledgeStore` below. The data it holds are `Item`s (one law
article or one Q&A pair); ranking returns `Hit`s, best first. The search users get (reference detection,
law-name boosts, re-ranking, the dense half) is `retrieval.Retriever`, built over a store and calling only
these methods, so a new backend only implements storage and full-text ranking. The two SQL
backends share their tables and the SQL that reads them the same way: `sql_store.SqlStore`, written once with
the backend's parameter placeholder (`?` for SQLite, `%s` for PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

from lawtune.kb.numerals import to_chinese

Kind = Literal["article", "qa"]


@dataclass(frozen=True)
class Item:
    """One piece of knowledge. Articles carry law/article/version; Q&A pairs carry question and answer."""

    kind: Kind
    text: str  # article text (starts with 第X条) or the answer of a Q&A pair
    law: str = ""  # short name: 劳动合同法
    law_full: str = ""  # full name: 中华人民共和国劳动合同法
    article: int = 0
    sub: int = 0  # 之N, 0 for a plain article
    version: str = ""  # YYYY-MM-DD
    current: bool = True  # newest version of a law still in force (always True for Q&A)
    path: str = ""  # 编 / 章 / 节 headings, " / "-joined
    question: str = ""  # Q&A only
    source: str = ""  # file it came from
    # this provision's number in the law's current version (versions.py): its own for a current article, the
    # renumbered one for an older version's article, 0 when the current version has no such provision (and Q&A)
    current_article: int = 0
    current_sub: int = 0

    def search_fields(self) -> tuple[str, str, str]:
        """The three texts full-text search indexes: law names, heading path (question for Q&A), text."""
        return f"{self.law} {self.law_full}", self.question if self.kind == "qa" else self.path, self.text

    def cite(self) -> str:
        """《劳动合同法》第八十二条 for an article, the question for a Q&A pair."""
        if self.kind != "article":
            return self.question
        sub = f"之{to_chinese(self.sub)}" if self.sub else ""
        return f"《{self.law}》第{to_chinese(self.article)}条{sub}"


@dataclass(frozen=True)
class Hit:
    item: Item
    score: float  # higher is better; comparable only within one search
    exact: bool = False  # the question named this article (exact lookup), not a text match
    # the older version's article whose text matched, when search returned its current article instead
    # ("2018-10-26 第一百四十六条"); empty when the current text matched
    via: str = ""

    def to_json(self) -> dict:
        """Flat record as `lawtune kb search --json` prints it: law, article, sub, score, text first."""
        data = asdict(self.item)
        record = {k: data.pop(k) for k in ("law", "article", "sub")}
        record.update(score=round(self.score, 4), text=data.pop("text"), exact=self.exact, via=self.via, **data)
        return record


@dataclass(frozen=True)
class LawVersion:
    full_name: str
    short_name: str
    version: str
    current: bool
    articles: frozenset[tuple[int, int]] = field(default=frozenset(), repr=False)  # (article, sub)


@dataclass
class Catalog:
    """Which laws, versions and articles a store holds, and which laws the texts say were repealed."""

    versions: dict[str, list[LawVersion]]  # full name → versions, newest first
    repealed: dict[str, str]  # full name of a repealed law → what repealed it (e.g. 《民法典》第一千二百六十条)

    def current(self, full_name: str) -> LawVersion | None:
        return next((v for v in self.versions.get(full_name, []) if v.current), None)

    @classmethod
    def from_rows(cls, article_rows: Iterable[tuple], repeal_rows: Iterable[tuple]) -> "Catalog":
        """Build a catalog from a backend's rows, the same for every engine.

        article_rows: (law_full, law, version, current, article, sub) per article;
        repeal_rows: (law_full, by_law, by_cite) per repeal clause found in the texts.
        """
        from lawtune.kb.repeals import STATIC_REPEALED

        articles: dict[tuple[str, str], set[tuple[int, int]]] = {}
        info: dict[tuple[str, str], tuple[str, bool]] = {}
        for law_full, law, version, current, article, sub in article_rows:
            articles.setdefault((law_full, version), set()).add((article, sub))
            info[(law_full, version)] = (law, bool(current))
        versions: dict[str, list[LawVersion]] = {}
        for (law_full, version), (law, current) in sorted(info.items(), key=lambda kv: kv[0][1], reverse=True):
            versions.setdefault(law_full, []).append(
                LawVersion(law_full, law, version, current, frozenset(articles[(law_full, version)])))
        repealed = dict(STATIC_REPEALED)
        for law_full, by_law, by_cite in repeal_rows:
            if by_law != law_full and not any(v.current for v in versions.get(law_full, [])):
                repealed[law_full] = by_cite
        return cls(versions=versions, repealed=repealed)


class KnowledgeStore(Protocol):
    """What a backend provides. Scores: higher is better. `current_only` hides outdated/repealed versions."""

    def add(self, items: Iterable[Item]) -> int:
        """Store items; searchable as soon as this returns (no rebuild). Returns how many were added."""

    def text_search(self, query: str, k: int, *, current_only: bool = True, laws: Iterable[str] = (),
                    kinds: Iterable[Kind] = ("article", "qa")) -> list[Hit]:
        """Plain full-text ranking (BM25 or the engine's equivalent), optionally limited to some laws (full names)."""

    def lookup(self, law: str, article: int, sub: int = 0, version: str | None = None) -> Item | None:
        """One article by law (short or full name), number, 之N. version None: the current version's article,
        else the newest version that has it (check `item.current`); None if no version has it."""

    def char_scores(self, query: str, items: list[Item]) -> list[float]:
        """Each item's score for the query's single CJK characters, as the engine's full-text ranking would score
        them were characters indexed (they are not: `text_search` matches bigrams); retrieval adds it."""

    def catalog(self) -> Catalog: ...

    def count(self) -> dict[str, int]:
        """Items per kind."""

    def get_blob(self, key: str) -> bytes | None:
        """A stored blob (the dense index), None if absent."""

    def refresh(self) -> int:
        """The KB's generation, moved by every change (this store's `add`, another process's): who caches what
        the KB holds (the retriever, the citation checker) reads it again when it moved."""

    def close(self) -> None: ...
