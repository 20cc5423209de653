"""The scale-out backend: the same `KnowledgeStore` on a PostgreSQL server's full-text search.

    lawtune kb build -o postgresql://lawtune@db.example:5432/lawtune     # any CLI KB argument takes the URL
    store = open_store("postgresql://lawtune@127.0.0.1:5432/lawtune")    # PostgresStore.open(url)
    Retriever(store).search("离婚需要什么材料", k=5)                      # -> [Hit, ...], as over SqliteStore

Needs `pip install 'lawtune[postgres]'` (psycopg 3). The URL is libpq's (`postgresql://user[:password]@host:port/db`);
the KB lives in schema `lawtune_kb` of that database (tables `meta`, `items`, `repeals`, `token_df`, `char_df`), so one
database holds one KB and the rest of the database is left alone. `build` fills a fresh schema and swaps it in with
one transaction: readers see the old KB or the new one, never half of one.

Tokenization is lawtune's own (tokenize.py, the same function as for SQLite, in Python): each column's tokens are
joined by spaces and parsed by `to_tsvector('simple', ...)`, which keeps each token as one lexeme (CJK bigrams and
[a-z0-9]+ runs, no punctuation: nothing for its parser to split or stem). `items.tsv` = law name (weight A) ||
heading path or Q&A question (B) || text (C), with a GIN index; a query is the OR (`|`) of its tokens.

Ranking vs SQLite's BM25 (`sqlite_store`): PostgreSQL's `ts_rank` has no inverse document frequency, so a common
token would count as much as a rare one. lawtune keeps each token's document frequency in `token_df` (updated by
`add`) and ranks by Σ idf(t) · ts_rank(tsv, t) — BM25's idf, summed per query token — with `ts_rank`'s own
per-token term saturation (Σ w/i², not BM25's k1) and length normalisation 1 (÷ (1 + log length), not BM25's b
against the average length). To keep that to a few `ts_rank` calls per matching row, query tokens are grouped
into bins of `IDF_BIN` idf width (≤ 9 bins: idf runs from ~2.2, the MAX_DF cut, to ~11), each weighted by
its tokens' idf sum; fixed bins, so a new rare token (one `kb add` brought in) cannot regroup the others. Column weights: `ts_rank` takes the largest
weight among a token's positions (A/B/C = `WEIGHTS`, law name 1.5 : path 1 : text 1), where BM25 adds each
column's weighted frequency (SQLite: 2 : 1 : 1). The same `MAX_DF` drop of very common query tokens as SQLite. One more
difference: FTS5 walks posting lists, while ranking here reads each candidate's whole tsvector, so only items
holding a rarer query token (in ≤ `MATCH_MAX_DF` of the items) are ranked — an approximation of BM25's top k
that the benchmark checks (items with only common tokens score low anyway).
Measured side by side in docs/knowledge-base.md (PostgreSQL section).
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable

from lawtune.errors import LawtuneError
from lawtune.kb.dense import refresh_dense, train_dense
from lawtune.kb.sqlite_store import FORMAT, FORMAT_VERSION, MAX_DF
from lawtune.kb.sql_store import ITEM_FIELDS, AddTally, SqlStore, item_from_row, row_values
from lawtune.kb.store import Hit, Item
from lawtune.kb.tokenize import DEFAULT_TOKENIZER, characters, tokenize

URL_PREFIXES = ("postgresql://", "postgres://")
SCHEMA = "lawtune_kb"
# law name, path / question, text. Not SQLite's 2 : 1 : 1: ts_rank takes a token's largest position weight where
# BM25 adds the columns, so 2 : 1 : 1 over-weights the law name here. LawBench 3-2, first 150 questions, recall@5:
# 2 : 1 : 1 0.640, 1 : 1 : 1 0.673, 1.5 : 1 : 1 0.680 (SQLite 0.680)
WEIGHTS = (1.5, 1.0, 1.0)
IDF_BIN = 1.0  # width of the idf bins: one ts_rank call per bin and matching row (see the module docstring)
NORMALIZATION = 1  # ts_rank's length normalisation: 1 = ÷ (1 + log length)
MATCH_MAX_DF = 0.02  # candidates hold a query token found in at most this share of items (see _text_search)

TABLES = """
CREATE TABLE {schema}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE {schema}.items (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL, text TEXT NOT NULL, law TEXT,
    law_full TEXT, article INTEGER, sub INTEGER, version TEXT, current BOOLEAN NOT NULL, path TEXT, question TEXT,
    source TEXT, current_article INTEGER NOT NULL DEFAULT 0, current_sub INTEGER NOT NULL DEFAULT 0,
    tsv TSVECTOR NOT NULL
);
CREATE INDEX ON {schema}.items (law_full, article, sub);
CREATE INDEX ON {schema}.items (law, article, sub);
CREATE TABLE {schema}.repeals (law_full TEXT NOT NULL, by_law TEXT NOT NULL, by_version TEXT, by_cite TEXT NOT NULL,
                               PRIMARY KEY (law_full, by_law));
CREATE TABLE {schema}.token_df (token TEXT PRIMARY KEY, df INTEGER NOT NULL);
CREATE TABLE {schema}.char_df (char TEXT PRIMARY KEY, df INTEGER NOT NULL);
CREATE TABLE {schema}.blobs (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
"""
# built after the bulk load of `build` (one pass over the data instead of one update per row)
GIN_INDEX = "CREATE INDEX items_tsv ON {schema}.items USING GIN (tsv)"


def is_postgres_url(location) -> bool:
    """True for `postgresql://…` (also after `Path()` collapsed the `//`, as a CLI Path argument does)."""
    return str(location).startswith(("postgresql:/", "postgres:/"))


def _url(location) -> str:
    text = str(location)
    # Path("postgresql://h/db") is "postgresql:/h/db": give the URL back its second slash
    return re.sub(r"^(postgres(?:ql)?):/(?!/)", r"\1://", text)


def shown_url(location) -> str:
    """The URL for messages: `//` restored, password masked."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", _url(location))


def _connect(url: str):
    try:
        import psycopg
    except ImportError:
        raise LawtuneError(f"{shown_url(url)}: a PostgreSQL knowledge base needs psycopg; "
                           "`pip install 'lawtune[postgres]'`") from None
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise LawtuneError(f"{shown_url(url)}: cannot connect to PostgreSQL ({reason}); start the server or fix "
                           "user@host:port/database in the URL (a new database: `createdb -h HOST -p PORT DB`)") from None
    except psycopg.ProgrammingError as error:  # a malformed URL
        raise LawtuneError(f"{shown_url(url)}: not a valid PostgreSQL URL ({error}); "
                           "write postgresql://user@host:port/database") from None


def _has_kb(conn, schema: str = SCHEMA) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.meta",)).fetchone()[0]


class PostgresStore(SqlStore):
    """SqlStore (lookup, catalog, version updates ...) on PostgreSQL, with ts_rank ranking and a COPY-based add."""

    PARAM = "%s"

    def __init__(self, connection, url: str):
        self.db = connection
        self.url = url
        # psycopg serialises calls on one connection, but `add`'s transaction must not interleave with reads
        self.lock = threading.RLock()
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        self.tokenizer = meta.get("tokenizer", DEFAULT_TOKENIZER)
        self._forget()
        self.generation = 0
        self._stamp = self._read_stamp()

    def _read_stamp(self) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return row[0] if row else None

    def _bump_generation(self) -> None:
        self.db.execute("INSERT INTO meta VALUES ('generation', '1') ON CONFLICT (key) "
                        "DO UPDATE SET value = (meta.value::bigint + 1)::text")

    def refresh(self) -> int:
        """Notice a change another process committed (`lawtune kb add` while serving; `add` bumps meta
        `generation`): caches — the item count above all, which idf divides by — are dropped. Returns
        `generation` (the citation checker rebuilds its catalog when it moved). One indexed read per request."""
        with self.lock:
            stamp = self._read_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                self._forget()
                self.generation += 1
            return self.generation

    # ---- open / build --------------------------------------------------------------------------------

    @classmethod
    def open(cls, location) -> "PostgresStore":
        url = _url(location)
        conn = _connect(url)
        if not _has_kb(conn):
            conn.close()
            raise LawtuneError(f"{shown_url(url)}: no lawtune knowledge base in this database (no schema {SCHEMA}); "
                               f"build one with `lawtune kb build -o {shown_url(url)}`")
        conn.execute(f"SET search_path = {SCHEMA}")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            conn.close()
            raise LawtuneError(f"{shown_url(url)}: knowledge-base format {meta.get('format_version')}, this lawtune reads "
                               f"{FORMAT_VERSION}; rebuild it with `lawtune kb build -o URL --force`")
        return cls(conn, url)

    @staticmethod
    def exists(location) -> bool:
        """Whether the database at the URL already holds a knowledge base (LawtuneError if unreachable)."""
        conn = _connect(_url(location))
        try:
            return _has_kb(conn)
        finally:
            conn.close()

    @classmethod
    def build(cls, location, items: Iterable[Item], tokenizer: str = DEFAULT_TOKENIZER,
              train_progress=None, phases: dict[str, float] | None = None) -> dict[str, int]:
        """Index items into a fresh schema, then replace the database's KB with it in one transaction.
        `phases` receives each phase's wall seconds, as for the SQLite build (build.build)."""
        phases = {} if phases is None else phases
        start = time.perf_counter()
        url = _url(location)
        tokenize("", tokenizer)  # fail early on an unknown scheme
        conn = _connect(url)
        staging = f"{SCHEMA}_build_{uuid.uuid4().hex[:8]}"
        try:
            encoding = conn.execute("SHOW server_encoding").fetchone()[0]
            if encoding != "UTF8":
                raise LawtuneError(f"{shown_url(url)}: database encoding {encoding}; the KB needs UTF8 "
                                   "(`createdb -E UTF8 -T template0 DB`)")
            with conn.transaction():
                conn.execute(f"CREATE SCHEMA {staging}")
                for statement in TABLES.format(schema=staging).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.cursor().executemany(f"INSERT INTO {staging}.meta VALUES (%s, %s)", [
                    ("format", FORMAT), ("format_version", FORMAT_VERSION), ("tokenizer", tokenizer), ("chars", "0")])
            conn.execute(f"SET search_path = {staging}")
            store = cls(conn, url)
            store.add(items)
            counts = store.count()
            if not counts:
                raise LawtuneError("no articles or Q&A pairs in the sources; "
                                   "give LawRefBook law Markdown files or conversations JSONL")
            phases["indexing"] = time.perf_counter() - start
            train_dense(store, progress=train_progress, phases=phases)
            start = time.perf_counter()
            conn.execute(GIN_INDEX.format(schema=staging))
            conn.execute(f"ANALYZE {staging}.items")
            with conn.transaction():
                conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
                conn.execute(f"ALTER SCHEMA {staging} RENAME TO {SCHEMA}")
            phases["finishing"] = time.perf_counter() - start
            return counts
        except BaseException:
            if not conn.closed:
                conn.execute(f"DROP SCHEMA IF EXISTS {staging} CASCADE")
            raise
        finally:
            conn.close()

    # ---- write ---------------------------------------------------------------------------------------

    def add(self, items: Iterable[Item]) -> int:
        """Insert items (COPY), update token frequencies and current versions, commit: searchable on return."""
        tally, df = AddTally(), Counter()
        with self.lock, self.db.transaction():  # all or nothing
            self.db.execute("CREATE TEMP TABLE new_items (LIKE items INCLUDING DEFAULTS, "
                            "law_tokens TEXT, title_tokens TEXT, body_tokens TEXT) ON COMMIT DROP")
            self.db.execute("ALTER TABLE new_items DROP COLUMN id, DROP COLUMN tsv")
            columns = (*ITEM_FIELDS, "law_tokens", "title_tokens", "body_tokens")
            with self.db.cursor().copy(f"COPY new_items ({', '.join(columns)}) FROM STDIN") as copy:
                for item in items:
                    texts = item.search_fields()
                    fields = [tokenize(text, self.tokenizer) for text in texts]
                    df.update(set().union(*fields))
                    copy.write_row(row_values(item) + [" ".join(f) for f in fields])
                    tally.note(item, texts)
            self.db.execute(
                f"INSERT INTO items ({', '.join(ITEM_FIELDS)}, tsv) SELECT {', '.join(ITEM_FIELDS)}, "
                "setweight(to_tsvector('simple', law_tokens), 'A') || setweight(to_tsvector('simple', title_tokens), 'B')"
                " || setweight(to_tsvector('simple', body_tokens), 'C') FROM new_items")
            self.db.execute("CREATE TEMP TABLE new_df (token TEXT, df INTEGER) ON COMMIT DROP")
            with self.db.cursor().copy("COPY new_df (token, df) FROM STDIN") as copy:
                for token, n in df.items():
                    copy.write_row((token, n))
            self.db.execute("INSERT INTO token_df SELECT token, df FROM new_df "
                            "ON CONFLICT (token) DO UPDATE SET df = token_df.df + EXCLUDED.df")
            self.db.cursor().executemany("INSERT INTO char_df VALUES (%s, %s) "
                                         "ON CONFLICT (char) DO UPDATE SET df = char_df.df + EXCLUDED.df", list(tally.char_df.items()))
            self.db.execute("UPDATE meta SET value = (value::bigint + %s)::text WHERE key = 'chars'", (tally.chars,))
            self.db.cursor().executemany("INSERT INTO repeals VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", tally.repeals)
            self._update_current(tally.touched)
            self._bump_generation()
        self._forget()
        self.generation += 1
        self._stamp = self._read_stamp()
        if tally.touched:  # articles came or changed version: the dense index follows (a KB without one: nothing)
            refresh_dense(self)
        return tally.count

    # ---- read ----------------------------------------------------------------------------------------

    def _text_search(self, query: str, k: int, current_only: bool, laws: list[str], kinds: list[str]) -> list[Hit]:
        idf = self._query_idf(query)
        if not idf:
            return []
        ordered = sorted(idf, key=idf.get)
        # Ranking reads every candidate's tsvector, and that dominates query time (a 40-token question matches
        # 16k of the 64k LawRefBook articles: ~1 s). So candidates are the items holding one of the query's
        # rarer tokens (in ≤ MATCH_MAX_DF of the items); an item with only common ones would rank low anyway.
        # Fewer than k such items: all tokens, as BM25 would.
        rare = [t for t in ordered if idf[t] >= _idf(self._items, MATCH_MAX_DF * self._items)]
        if rare and len(rare) < len(ordered):
            hits = self._ranked(idf, rare, k, current_only, laws, kinds)
            if len(hits) == k:
                return hits
        return self._ranked(idf, ordered, k, current_only, laws, kinds)

    def _ranked(self, idf: dict[str, float], match: list[str], k: int, current_only: bool, laws: list[str],
                kinds: list[str]) -> list[Hit]:
        # groups of tokens with similar idf: Σ over groups of mean idf · |group| · ts_rank(group), since ts_rank
        # of an OR query is the mean of its tokens' ranks
        ordered = sorted(idf, key=idf.get)
        bins: dict[int, list[str]] = {}
        for token in ordered:
            bins.setdefault(int(idf[token] // IDF_BIN), []).append(token)
        groups = list(bins.values())
        weights = "{0, %s, %s, %s}" % (WEIGHTS[2] / max(WEIGHTS), WEIGHTS[1] / max(WEIGHTS), WEIGHTS[0] / max(WEIGHTS))
        rank = " + ".join(f"%s * ts_rank(%s::float4[], tsv, to_tsquery('simple', %s), {NORMALIZATION})" for _ in groups)
        params: list = []
        for group in groups:
            params += [sum(idf[t] for t in group), weights, _or_query(group)]
        where = ["tsv @@ to_tsquery('simple', %s)", "kind = ANY(%s)"]
        params += [_or_query(match), kinds]
        if current_only:
            where.append("current")
        if laws:
            where.append("law_full = ANY(%s)")
            params.append(laws)
        with self.db.transaction():
            # the planner's estimate for an OR of many tokens is poor, and its sequential scan reads every
            # item's tsvector (2 s on LawRefBook); the GIN index reads only the candidates'
            self.db.execute("SET LOCAL enable_seqscan = off")
            rows = self.db.execute(
                f"SELECT {', '.join(ITEM_FIELDS)}, {rank} AS s FROM items WHERE {' AND '.join(where)} "
                f"ORDER BY s DESC LIMIT %s", [*params, k]).fetchall()
        return [Hit(item=item_from_row(row[:-1]), score=float(row[-1])) for row in rows]

    def _query_idf(self, query: str) -> dict[str, float]:
        """Query tokens → BM25 idf (as FTS5 computes it), without tokens in no item or in > MAX_DF of them."""
        tokens = list(dict.fromkeys(tokenize(query, self.tokenizer)))
        if not tokens:
            return {}
        n = self._item_count()
        df = dict(self.db.execute("SELECT token, df FROM token_df WHERE token = ANY(%s)", (tokens,)).fetchall())
        kept = [t for t in tokens if 0 < df.get(t, 0) <= MAX_DF * n]
        kept = kept or [t for t in tokens if df.get(t)]  # a query of common words only: keep them
        return {t: _idf(n, df[t]) for t in kept}

    def char_scores(self, query: str, items: list[Item]) -> list[float]:
        """Σ idf · ts_rank over the query's single CJK characters, computed in Python as `_ranked` ranks tokens
        had the tsvector held characters: idf from `char_df` (characters in more than MAX_DF of the items dropped),
        ts_rank's per-term value (occurrences weighted by column, `WEIGHTS` / max, in position order, Σ w/i²
        with the largest weight counted whole, ÷ π²/6) and length normalisation 1 (÷ log2(1 + length), length =
        the item's CJK characters). On the scale of `text_search`'s scores, so retrieval can add the two."""
        chars = list(dict.fromkeys(characters(query)))
        count, _mean_length, df = self._char_stats(chars)
        idf = {c: _idf(count, n) for c, n in df.items() if 0 < n <= MAX_DF * count}
        column_weights = [w / max(WEIGHTS) for w in WEIGHTS]
        scores = []
        for item in items:
            fields = item.search_fields()
            whole = "\n".join(fields)
            length = len(characters(whole))
            score = 0.0
            for char, weight in idf.items():
                if char in whole:
                    occurrences = [w for w, f in zip(column_weights, fields) for _ in range(f.count(char))]
                    score += weight * _term_rank(occurrences)
            scores.append(score / math.log2(1 + length) if length else 0.0)
        return scores

    def _char_df_rows(self, chars: list[str]) -> list[tuple[str, int]]:
        return self.db.execute("SELECT char, df FROM char_df WHERE char = ANY(%s)", (chars,)).fetchall()

    def put_blob(self, key: str, value: bytes) -> None:
        with self.lock, self.db.transaction():
            self.db.execute("INSERT INTO blobs VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (key, value))
            self._bump_generation()  # other processes' stores drop their retriever (it holds the dense index)
        self._retriever = None
        self._stamp = self._read_stamp()


def _idf(items: int, df: float) -> float:
    """BM25's idf as FTS5 computes it (floored at 1e-6). A df above the count (items another process added
    after the count was read) is the floor, never a math domain error."""
    return max(math.log((max(items - df, 0) + 0.5) / (df + 0.5)), 1e-6)


def _term_rank(weights: list[float]) -> float:
    """ts_rank's value for one query term (PostgreSQL's calc_rank_or) from its occurrences' weights in position
    order: Σ w_j / j², with the largest weight counted whole, ÷ π²/6 (the limit of Σ 1/j²)."""
    largest = max(weights)
    at = weights.index(largest) + 1
    return (largest + sum(w / (j * j) for j, w in enumerate(weights, 1)) - largest / (at * at)) / 1.64493406685


def _or_query(tokens: list[str]) -> str:
    """to_tsquery text: each token quoted (so no token is read as an operator), joined by OR."""
    return " | ".join("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in tokens)
