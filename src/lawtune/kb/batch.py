"""Many questions through one open knowledge base: `lawtune kb search KB --queries FILE --json`.

    from lawtune.kb.batch import read_queries, search_many
    queries = read_queries(Path("questions.jsonl"))          # [Query(line, question, id)], LawtuneError per bad line
    with open_store("kb.sqlite") as kb:
        for result in search_many(Retriever(kb), queries, k=20):   # input order; one retriever for all
            result.question, result.hits, result.cpu_ms

A queries file holds one question per line, or JSON lines with a `question` (or `query`) string field and an
optional `id`; the two may mix (a line starting with `{` is read as JSON). Blank lines are skipped. The
benchmarks score retrieval through the same `search_many`, so the CLI and the numbers share one code path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lawtune.errors import LawtuneError
from lawtune.kb.retrieval import Retriever
from lawtune.kb.store import Hit


@dataclass(frozen=True)
class Query:
    line: int  # 1-based line of the queries file (0 when built in code)
    question: str
    id: str | int | None = None


@dataclass(frozen=True)
class Result:
    query: Query
    hits: list[Hit]
    cpu_ms: float  # CPU time of this search, by the `clock` search_many was given

    @property
    def question(self) -> str:
        return self.query.question

    def to_json(self) -> dict:
        """One output line of `kb search --queries`: {"id"?, "question", "hits": [hit.to_json(), ...]}."""
        record: dict = {} if self.query.id is None else {"id": self.query.id}
        record.update(question=self.question, hits=[hit.to_json() for hit in self.hits])
        return record


def read_queries(path: Path) -> list[Query]:
    """The questions of a queries file, in order; LawtuneError naming the first bad line and the fix."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LawtuneError(f"{path}: no such queries file") from None
    except UnicodeDecodeError as error:
        raise LawtuneError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise LawtuneError(f"{path}: cannot read ({error.strerror})") from None
    queries = [_parse_line(path, n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not queries:
        raise LawtuneError(f"{path}: no questions; write one per line, or JSON lines with a \"question\" field")
    return queries


def _parse_line(path: Path, n: int, line: str) -> Query:
    if not line.startswith("{"):
        return Query(n, line)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise LawtuneError(f"{path}:{n}: not valid JSON ({error.msg} at column {error.colno}); "
                           "write one JSON object per line, or the plain question") from None
    field = "question" if "question" in record else "query"
    question = record.get(field)
    if question is None:
        raise LawtuneError(f"{path}:{n}: needs a non-empty string field \"question\" (or \"query\"); "
                           f"found fields {sorted(record)}")
    if not isinstance(question, str) or not question.strip():
        raise LawtuneError(f"{path}:{n}: \"{field}\" must be a non-empty string, not {json.dumps(question, ensure_ascii=False)}")
    qid = record.get("id")
    if qid is not None and not isinstance(qid, (str, int)):
        raise LawtuneError(f"{path}:{n}: \"id\" must be a string or an integer, not {type(qid).__name__}")
    return Query(n, question.strip(), qid)


def search_many(retriever: Retriever, queries: Iterable[Query], k: int = 5, *, current_only: bool = True,
                kinds: tuple[str, ...] = ("article", "qa"), clock: Callable[[], float] = time.process_time,
                progress: Callable[[], None] | None = None) -> Iterator[Result]:
    """Search each query in turn through one retriever (one open store); yields results in input order.

    `clock` measures each search (CPU seconds of this process by default; a benchmark passes one that adds a
    local PostgreSQL server's CPU). `progress` is called after each query.
    """
    for query in queries:
        start = clock()
        hits = retriever.search(query.question, k, current_only=current_only, kinds=kinds)
        cpu_ms = (clock() - start) * 1000
        yield Result(query, hits, cpu_ms)
        if progress:
            progress()
