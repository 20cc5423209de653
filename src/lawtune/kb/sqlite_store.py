"""The embedded backend: one SQLite file, FTS5 with BM25 over lawtune's own Chinese tokens.

    store = SqliteStore.create("kb.sqlite")          # new, empty; SqliteStore.open(path) for an existing one
    store.add(items)                                 # committed and searchable when it returns
    store.text_search("离婚 材料", k=5)              # -> [Hit, ...], BM25; users search via retrieval.Retriever
    store.close()

Tables: `items` (one row per article / Q&A pair, all fields of `Item`), `items_fts` (contentless FTS5 over the
tokenized law name, heading path or question, and text; rowid = items.id), `repeals` (which laws the texts
say were repealed, and by what), `char_df` (how many items hold each CJK character, for retrieval's character
re-score) and `meta` (format marker, tokenizer, `chars`: the CJK characters of all items). FTS5 sees space-separated tokens made
by `tokenize.py`, so the same function cuts documents and queries; `unicode61` only splits on the spaces.

BM25 column weights (law name, path/question, text) = `WEIGHTS`; measured in benchmarks/kb_retrieval.py.
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from lawtune.errors import LawtuneError
from lawtune.kb.dense import refresh_dense
from lawtune.kb.sql_store import ITEM_FIELDS, AddTally, SqlStore, item_from_row, row_values
from lawtune.kb.store import Hit, Item
from lawtune.kb.tokenize import DEFAULT_TOKENIZER, characters, tokenize

FORMAT = "lawtune-kb"
FORMAT_VERSION = "4"  # 2: current_article / current_sub (versions.py); 3: char_df and meta `chars` (_char_stats);
# 4: table blobs (the dense index, dense.py)
WEIGHTS = (2.0, 1.0, 1.0)  # law name, path / question, text
# Query tokens in more than this share of items (规定, 应当, 人民 …) are dropped from the query: they barely move
# BM25 but their long posting lists dominate query time.
MAX_DF = 0.1
BM25_K1, BM25_B = 1.2, 0.75  # FTS5's bm25() constants, for char_scores
OVERSAMPLE = 3  # text_search ranks k × this many FTS5 matches before the kind / version filters (see there)
TOKEN_CACHE_SIZE = 10_000  # query tokens whose document frequency is kept (LRU): queries cannot grow it without bound
BUSY_TIMEOUT_S = 60.0  # a writer waits this long for another writer (`kb add` while `kb add`); readers never wait (WAL)

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, text TEXT NOT NULL, law TEXT, law_full TEXT,
    article INTEGER, sub INTEGER, version TEXT, current INTEGER NOT NULL, path TEXT, question TEXT, source TEXT,
    current_article INTEGER NOT NULL DEFAULT 0, current_sub INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX items_ref ON items (law_full, article, sub);
CREATE INDEX items_law ON items (law, article, sub);
CREATE TABLE repeals (law_full TEXT NOT NULL, by_law TEXT NOT NULL, by_version TEXT, by_cite TEXT NOT NULL,
                      PRIMARY KEY (law_full, by_law));
CREATE TABLE char_df (char TEXT PRIMARY KEY, df INTEGER NOT NULL);
CREATE TABLE blobs (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE VIRTUAL TABLE items_fts USING fts5 (law, title, body, content='', tokenize='unicode61');
"""


class SqliteStore(SqlStore):
    """SqlStore (lookup, catalog, version updates ...) on SQLite, with FTS5 ranking and SQLite's own add."""

    PARAM = "?"

    def __init__(self, connection: sqlite3.Connection, path: Path):
        self.db = connection
        self.path = path
        # one connection shared by the threads of a server: sqlite3 objects are not safe for concurrent use
        self.lock = threading.RLock()
        meta = dict(self.db.execute("SELECT key, value FROM meta"))
        self.tokenizer = meta.get("tokenizer", DEFAULT_TOKENIZER)
        # document frequency per query token, for MAX_DF: a bounded LRU (misses too, so they age out)
        self._token_df = functools.lru_cache(maxsize=TOKEN_CACHE_SIZE)(self._fetch_token_df)
        self._forget()
        # fts5vocab reads FTS5's term statistics; TEMP so that opening a KB never writes to the file
        self.db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.items_vocab USING fts5vocab(main, items_fts, 'row')")
        # bumped whenever the KB changed (this store's add, or another process's, seen by SQLite's data_version)
        self.generation = 0
        self._data_version = self.db.execute("PRAGMA data_version").fetchone()[0]

    def _forget(self) -> None:
        super()._forget()
        self._token_df.cache_clear()

    def refresh(self) -> int:
        """Notice a change another process committed (`lawtune kb add` while serving): caches are dropped, so
        the next search sees the new items and counts. Returns `generation` (callers that cache the catalog,
        like the citation checker, rebuild it when it moved). One PRAGMA: cheap enough for every request."""
        with self.lock:
            version = self.db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._data_version = version
                self._forget()
                self.generation += 1
            return self.generation

    # ---- open / create -------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, tokenizer: str = DEFAULT_TOKENIZER) -> "SqliteStore":
        path = Path(path)
        if path.exists():
            raise LawtuneError(f"{path}: already exists; `lawtune kb add` adds to it, or pick another -o path")
        tokenize("", tokenizer)  # fail early on an unknown scheme
        db = _connect(path, "rwc")
        db.execute("PRAGMA journal_mode=WAL")  # kept in the file: searches never wait for a `kb add`
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO meta VALUES (?, ?)",
                       [("format", FORMAT), ("format_version", FORMAT_VERSION), ("tokenizer", tokenizer), ("chars", "0")])
        db.commit()
        return cls(db, path)

    @classmethod
    def open(cls, path: str | Path) -> "SqliteStore":
        path = Path(path)
        if not path.is_file():
            raise LawtuneError(f"{path}: no such knowledge base; build one with `lawtune kb build -o {path}`")
        try:
            writable = os.access(path, os.W_OK)  # a read-only KB can still be searched
            db = _connect(path, "rw" if writable else "ro")
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if writable and meta.get("format") == FORMAT:
                _use_wal(db)
        except sqlite3.DatabaseError as error:
            raise LawtuneError(f"{path}: not a lawtune knowledge base ({error}); build one with `lawtune kb build`") from error
        if meta.get("format") != FORMAT:
            raise LawtuneError(f"{path}: not a lawtune knowledge base (no format marker); build one with `lawtune kb build`")
        if meta.get("format_version") != FORMAT_VERSION:
            raise LawtuneError(f"{path}: knowledge-base format {meta.get('format_version')}, this lawtune reads "
                               f"{FORMAT_VERSION}; rebuild it with `lawtune kb build`")
        return cls(db, path)

    # ---- write ---------------------------------------------------------------------------------------

    def add(self, items: Iterable[Item]) -> int:
        """Insert items, update which versions are current, commit: searchable when this returns."""
        tally = AddTally()
        with self.lock, self.db:  # one transaction: all or nothing
            for item in items:
                cursor = self.db.execute(
                    f"INSERT INTO items ({', '.join(ITEM_FIELDS)}) VALUES ({', '.join('?' * len(ITEM_FIELDS))})",
                    row_values(item))
                fields = item.search_fields()
                self.db.execute("INSERT INTO items_fts (rowid, law, title, body) VALUES (?, ?, ?, ?)",
                                (cursor.lastrowid, *(" ".join(tokenize(f, self.tokenizer)) for f in fields)))
                tally.note(item, fields)
            self.db.executemany("INSERT OR IGNORE INTO repeals VALUES (?, ?, ?, ?)", tally.repeals)
            self.db.executemany("INSERT INTO char_df VALUES (?, ?) ON CONFLICT (char) DO UPDATE SET df = df + excluded.df",
                                tally.char_df.items())
            self.db.execute("INSERT INTO meta VALUES ('chars', ?) ON CONFLICT (key) DO UPDATE "
                            "SET value = CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)", (str(tally.chars),))
            self._update_current(tally.touched)
            self._forget()
            self.generation += 1
            self._data_version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if tally.touched:  # articles came or changed version: the dense index follows (a KB without one: nothing)
            refresh_dense(self)
        return tally.count

    # ---- read ----------------------------------------------------------------------------------------

    def _text_search(self, query: str, k: int, current_only: bool, laws: list[str], kinds: list[str]) -> list[Hit]:
        tokens = self._query_tokens(query)
        if not tokens:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in tokens)
        where = [f"i.kind IN ({', '.join('?' * len(kinds))})"]
        params: list = [match, *kinds]
        if current_only:
            where.append("i.current = 1")
        if laws:
            where.append(f"i.law_full IN ({', '.join('?' * len(laws))})")
            params += laws
        fields, bm25 = ", ".join("i." + f for f in ITEM_FIELDS), f"bm25(items_fts, {', '.join(map(str, WEIGHTS))})"
        rows = None
        if not laws:
            # Rank in FTS5 alone, then join the best few times k: joining every matching row to `items` before
            # sorting costs a third of the query time. Too few left after the filters: the full query below.
            ranked = (f"SELECT rowid, {bm25} AS s FROM items_fts WHERE items_fts MATCH ? ORDER BY s LIMIT ?")
            rows = self.db.execute(
                f"SELECT {fields}, f.s FROM ({ranked}) f JOIN items i ON i.id = f.rowid "
                f"WHERE {' AND '.join(where)} ORDER BY f.s LIMIT ?", [match, k * OVERSAMPLE, *params[1:], k]).fetchall()
            if len(rows) < k:
                rows = None
        if rows is None:
            rows = self.db.execute(
                f"SELECT {fields}, {bm25} AS s FROM items_fts JOIN items i ON i.id = items_fts.rowid "
                f"WHERE items_fts MATCH ? AND {' AND '.join(where)} ORDER BY s LIMIT ?", [*params, k]).fetchall()
        return [Hit(item=item_from_row(row[:-1]), score=-row[-1]) for row in rows]

    def _query_tokens(self, query: str) -> list[str]:
        tokens = list(dict.fromkeys(tokenize(query, self.tokenizer)))  # unique, in order
        items = self._item_count()
        df = {token: self._token_df(token) for token in tokens}
        kept = [t for t in tokens if 0 < df[t] <= MAX_DF * items]
        return kept or [t for t in tokens if df[t]]  # a query of common words only: keep them

    def _fetch_token_df(self, token: str) -> int:
        row = self.db.execute("SELECT doc FROM temp.items_vocab WHERE term = ?", (token,)).fetchone()
        return row[0] if row else 0

    def char_scores(self, query: str, items: list[Item]) -> list[float]:
        """BM25 of the query's single CJK characters over each item's three columns, computed as FTS5 would had it
        indexed characters: idf from `char_df` (characters in more than MAX_DF of the items dropped, as for
        tokens), column weights `WEIGHTS`, FTS5's k1 and b, length = the item's CJK characters."""
        chars = list(dict.fromkeys(characters(query)))
        count, mean_length, df = self._char_stats(chars)
        idf = {c: math.log((count - n + 0.5) / (n + 0.5)) for c, n in df.items() if 0 < n <= MAX_DF * count}
        scores = []
        for item in items:
            fields = item.search_fields()
            whole = "\n".join(fields)
            saturation = BM25_K1 * (1 - BM25_B + BM25_B * len(characters(whole)) / mean_length)
            score = 0.0
            for char, weight in idf.items():
                if char in whole:
                    freq = sum(w * f.count(char) for w, f in zip(WEIGHTS, fields))
                    score += weight * freq * (BM25_K1 + 1) / (freq + saturation)
            scores.append(score)
        return scores

    def _char_df_rows(self, chars: list[str]) -> Iterable[tuple[str, int]]:
        return self.db.execute(f"SELECT char, df FROM char_df WHERE char IN ({', '.join('?' * len(chars))})", chars)

    def put_blob(self, key: str, value: bytes) -> None:
        with self.lock, self.db:
            self.db.execute("INSERT INTO blobs VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (key, value))
        self._retriever = None


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    """A connection by URI, the path percent-quoted: a `?` or `#` in a folder name is part of the path, not
    the URI's query or fragment (which would open or create another file)."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode={mode}"
    return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_S)


def _use_wal(db: sqlite3.Connection) -> None:
    """WAL for a KB made before lawtune used it (a no-op once set; skipped while another process holds it)."""
    if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    db.execute("PRAGMA busy_timeout = 0")  # never wait for it: the next open tries again
    try:
        db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
