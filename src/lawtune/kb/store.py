"""The knowledge-store interface: what every backend (sqlite_store.py, postgres_store.py) provides.

    from lawtune.kb import open_store
    with open_store("kb.sqlite") as kb:
        for hit in kb.search("公司拖欠工资怎么办", k=5):
            print(hit.item.cite(), hit.score, hit.item.text[:60])
        item = kb.lookup("劳动合同法", 82)           # newest current version; None if absent
        catalog = kb.catalog()                       # what the citation check needs

A backend is any class with the methods of `KnowledgeStore` below. The data it holds are `Item`s (one law
article or one Q&A pair); search returns `Hit`s, best first. Retrieval logic that does not depend on the engine
(reference detection, law-name boosts, re-ranking) lives in `retrieval.py` and works on top of a backend's
`text_search` and `lookup`, so a new backend only implements storage and full-text ranking. The two SQL
backends share their tables and the SQL that reads them the same way: `SqlStore` below, written once with the
backend's parameter placeholder (`?` for SQLite, `%s` for PostgreSQL).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol, Self

from lawtune.kb.numerals import to_chinese
from lawtune.kb.repeals import repealed_in
from lawtune.kb.tokenize import characters
from lawtune.kb.versions import number_updates

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

    def search(self, query: str, k: int = 5, *, current_only: bool = True,
               kinds: Iterable[Kind] = ("article", "qa")) -> list[Hit]:
        """The retrieval users get: named articles first, then law-aware, re-ranked text matches."""

    def lookup(self, law: str, article: int, sub: int = 0, version: str | None = None) -> Item | None:
        """One article by law (short or full name), number, 之N. version None: the current version's article,
        else the newest version that has it (check `item.current`); None if no version has it."""

    def char_scores(self, query: str, items: list[Item]) -> list[float]:
        """Each item's score for the query's single CJK characters, as the engine's full-text ranking would score
        them were characters indexed (they are not: `text_search` matches bigrams); retrieval adds it."""

    def catalog(self) -> Catalog: ...

    def count(self) -> dict[str, int]:
        """Items per kind."""

    def close(self) -> None: ...


ITEM_FIELDS = ("kind", "text", "law", "law_full", "article", "sub", "version", "current", "path", "question", "source",
               "current_article", "current_sub")  # the columns of table `items` that hold an Item, in this order


def row_values(item: Item) -> list:
    """The ITEM_FIELDS of an item to insert. An article counts as current until `_update_current` links the
    versions, so that only older versions' rows are written twice."""
    values = [getattr(item, f) for f in ITEM_FIELDS]
    if item.kind == "article" and not item.current_article:
        values[-2:] = [item.article, item.sub]
    return values


def item_from_row(row) -> Item:
    """An Item from a row of ITEM_FIELDS (SQLite stores `current` as 0/1)."""
    data = dict(zip(ITEM_FIELDS, row))
    data["current"] = bool(data["current"])
    return Item(**data)


@dataclass
class AddTally:
    """What a backend's `add` counts while it inserts items, for the tables it updates after them."""

    count: int = 0
    chars: int = 0  # CJK characters of all items (meta `chars`)
    char_df: Counter = field(default_factory=Counter)  # items holding each CJK character (table char_df)
    touched: set[str] = field(default_factory=set)  # laws whose current version may have changed
    repeals: list[tuple[str, str, str, str]] = field(default_factory=list)  # rows of table repeals

    def note(self, item: Item, texts: tuple[str, str, str]) -> None:
        """Count one item; `texts` = its `search_fields()`."""
        item_chars = characters("".join(texts))
        self.chars += len(item_chars)
        self.char_df.update(set(item_chars))
        if item.kind == "article":
            self.touched.add(item.law_full)
            for target in repealed_in(item.text):
                self.touched.add(target)
                self.repeals.append((target, item.law_full, item.version, item.cite()))
        self.count += 1


class SqlStore:
    """What SqliteStore and PostgresStore share: tables `items`, `repeals`, `meta`, `char_df`, `blobs` and the
    SQL that reads and updates them alike, with the backend's parameter placeholder `PARAM` in the SQL.

    A subclass sets `db` (a connection), `lock`, `tokenizer` and `generation` in its `__init__` (then calls
    `_forget`), and provides `refresh`, `_text_search(query, k, current_only, laws, kinds)` and
    `_char_df_rows(chars)` ((char, df) rows of `char_df`); its `add` calls `_update_current` in its transaction."""

    PARAM = "?"  # the DB-API placeholder: "?" (sqlite3's qmark), "%s" (psycopg's format)

    def _forget(self) -> None:
        """Drop every cache of the KB's contents (after a change)."""
        self._retriever = None  # built on first search (it caches law names)
        self._items = 0  # item count for MAX_DF (and PostgreSQL's idf)
        self._char_df: dict[str, int] = {}  # _char_stats's cache
        self._chars = 0

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- write ---------------------------------------------------------------------------------------

    def _update_current(self, laws: set[str]) -> None:
        """current = newest version of a law, unless a later law's text repealed it (see repeals.py); then, for a
        law with older versions, every article's number in the current version (versions.py)."""
        p = self.PARAM
        for law in laws:
            versions = [v for (v,) in self.db.execute(
                f"SELECT DISTINCT version FROM items WHERE law_full = {p} AND kind = 'article'", (law,)).fetchall()]
            if not versions:
                continue  # a repeal target the KB does not hold
            newest = max(versions)
            repealed = any((by_version or "") > newest for (by_version,) in self.db.execute(
                f"SELECT by_version FROM repeals WHERE law_full = {p} AND by_law != law_full", (law,)).fetchall())
            self.db.execute(f"UPDATE items SET current = (version = {p} AND NOT {p}) WHERE law_full = {p} "
                            f"AND kind = 'article' AND current != (version = {p} AND NOT {p})",
                            (newest, repealed, law, newest, repealed))
            if len(versions) > 1 or repealed:
                rows = self.db.execute("SELECT id, version, current, article, sub, text, current_article, current_sub "
                                       f"FROM items WHERE law_full = {p} AND kind = 'article'", (law,)).fetchall()
                self.db.cursor().executemany(
                    f"UPDATE items SET current_article = {p}, current_sub = {p} WHERE id = {p}", number_updates(rows))

    # ---- read ----------------------------------------------------------------------------------------

    def text_search(self, query: str, k: int, *, current_only: bool = True, laws: Iterable[str] = (),
                    kinds: Iterable[Kind] = ("article", "qa")) -> list[Hit]:
        with self.lock:
            self.refresh()
            return self._text_search(query, k, current_only, list(laws), list(kinds))

    def search(self, query: str, k: int = 5, *, current_only: bool = True,
               kinds: Iterable[Kind] = ("article", "qa")) -> list[Hit]:
        from lawtune.kb.retrieval import Retriever

        self.refresh()
        if self._retriever is None:
            self._retriever = Retriever(self)
        return self._retriever.search(query, k, current_only=current_only, kinds=kinds)

    def lookup(self, law: str, article: int, sub: int = 0, version: str | None = None) -> Item | None:
        p = self.PARAM
        sql = (f"SELECT {', '.join(ITEM_FIELDS)} FROM items WHERE kind = 'article' AND (law_full = {p} OR law = {p}) "
               f"AND article = {p} AND sub = {p}")
        params: list = [law, law, article, sub]
        if version is not None:
            sql += f" AND version = {p}"
            params.append(version)
        # the current version first, then the newest
        with self.lock:
            row = self.db.execute(sql + " ORDER BY current DESC, version DESC LIMIT 1", params).fetchone()
        return item_from_row(row) if row else None

    def catalog(self) -> Catalog:
        with self.lock:
            self.refresh()
            rows = self.db.execute(
                "SELECT law_full, law, version, current, article, sub FROM items WHERE kind = 'article'").fetchall()
            repeal_rows = self.db.execute("SELECT law_full, by_law, by_cite FROM repeals").fetchall()
        return Catalog.from_rows(rows, repeal_rows)

    def count(self) -> dict[str, int]:
        """Items per kind."""
        with self.lock:
            return dict(self.db.execute("SELECT kind, COUNT(*) FROM items GROUP BY kind").fetchall())

    def current_articles(self) -> list[Item]:
        """Every article of a current version, in insertion order (the dense index encodes these)."""
        with self.lock:
            rows = self.db.execute(f"SELECT {', '.join(ITEM_FIELDS)} FROM items WHERE kind = 'article' AND current "
                                   "ORDER BY id").fetchall()
        return [item_from_row(row) for row in rows]

    def get_blob(self, key: str) -> bytes | None:
        with self.lock:
            row = self.db.execute(f"SELECT value FROM blobs WHERE key = {self.PARAM}", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def _item_count(self) -> int:
        """How many items the KB holds (cached until `_forget`)."""
        if not self._items:
            self._items = self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return self._items

    def _char_stats(self, chars: list[str]) -> tuple[int, float, dict[str, int]]:
        """(items, mean CJK characters per item, {char: items holding it}) for a backend's `char_scores`: read
        under `lock`, cached in `_items`, `_chars` and `_char_df` (which `_forget` resets)."""
        with self.lock:
            self._item_count()
            if not self._chars:
                self._chars = int(self.db.execute("SELECT value FROM meta WHERE key = 'chars'").fetchone()[0])
            missing = [c for c in dict.fromkeys(chars) if c not in self._char_df]
            if missing:
                self._char_df.update(dict.fromkeys(missing, 0))
                self._char_df.update(self._char_df_rows(missing))
            return self._items, self._chars / max(1, self._items), {c: self._char_df[c] for c in chars}
