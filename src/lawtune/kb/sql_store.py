"""What the two SQL backends (sqlite_store.py, postgres_store.py) share: the `items` table's columns, the
bookkeeping of an `add`, and `SqlStore` — lookup, catalog, version updates, blobs and the locked entry to full-text
ranking — written once with the backend's parameter placeholder (`?` for SQLite, `%s` for PostgreSQL). The search
algorithm is not here: `retrieval.Retriever` runs it over a store; a store never calls the retriever.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Self

from lawtune.kb.repeals import repealed_in
from lawtune.kb.store import Catalog, Hit, Item, Kind
from lawtune.kb.tokenize import characters
from lawtune.kb.versions import number_updates


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
