"""`lawtune kb build` and `lawtune kb add`: read law Markdown and Q&A JSONL into a knowledge base.

    from lawtune.kb.build import build, add_files
    build(["laws/", "out/train.jsonl"], "kb.sqlite")   # atomic: kb.sqlite appears complete or not at all
    add_files("kb.sqlite", ["more_qa.jsonl"])           # searchable when it returns
    build([], "kb.sqlite")                              # no sources: the laws bundled with lawtune

Sources: `.md` files or folders of them (LawRefBook layout, see laws.py) become one item per article;
`.jsonl` files in the conversations format `lawtune prepare` writes become one Q&A item per user/assistant pair;
`.json` files of `{"query", "response", "laws"?}` records (Lawyer LLaMA's consultation files) one Q&A item per
record. When a record cites articles in `laws` (`meta.laws` after prepare: "《民法典》第一千零七十六条：…"), the
citations are put at the end of the answer ("相关法条：《民法典》第一千零七十六条；…") so that retrieval can
let the Q&A item vote for them (retrieval.py, the Q&A bridge); the item schema stays the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from lawtune.errors import LawtuneError
from lawtune.fsutil import atomic_path
from lawtune.kb import open_store
from lawtune.kb.dense import train_dense
from lawtune.kb.laws import find_law_files, parse_law_file
from lawtune.kb.postgres_store import PostgresStore, is_postgres_url
from lawtune.kb.sqlite_store import SqliteStore
from lawtune.kb.store import Item
from lawtune.kb.tokenize import DEFAULT_TOKENIZER

Progress = Callable[[str, int], None]  # (file just read, items it gave)
TrainProgress = Callable[[int, int], None]  # (training step, steps) of the learned retriever


def build(sources: Iterable[str | Path], out: str | Path, *, tokenizer: str = DEFAULT_TOKENIZER,
          progress: Progress | None = None, train_progress: TrainProgress | None = None,
          phases: dict[str, float] | None = None) -> dict[str, int]:
    """Build a new KB file at `out` (replacing any old one only when complete); returns items per kind.

    After indexing, the learned retriever is trained on the KB's articles and stored in it (dense.py);
    `train_progress(step, steps)` follows that. `phases`, when given, receives each phase's wall seconds
    (indexing, then train_dense's pairs / training / encoding / storing, then finishing). `out` may be a `postgresql://` URL: the KB is built in that
    database (postgres_store.py), swapped in whole."""
    files = source_files(sources)
    if is_postgres_url(out):
        return PostgresStore.build(out, _items_with_progress(files, progress), tokenizer=tokenizer,
                                   train_progress=train_progress, phases=phases)
    phases = {} if phases is None else phases
    start = time.perf_counter()
    with atomic_path(out) as tmp:  # SQLite writes by path: a temporary sibling, renamed over `out` when complete
        store = SqliteStore.create(tmp, tokenizer=tokenizer)
        try:
            store.add(_items_with_progress(files, progress))  # one transaction: far faster than one per file
            counts = store.count()
            if not counts:
                raise LawtuneError(f"no articles or Q&A pairs in {', '.join(map(str, files))}; "
                                   "give LawRefBook law Markdown files or conversations JSONL")
            phases["indexing"] = time.perf_counter() - start
            train_dense(store, progress=train_progress, phases=phases)
            start = time.perf_counter()
            store.db.execute("VACUUM")
            phases["finishing"] = time.perf_counter() - start
        finally:
            store.close()
    return counts


def add_files(kb: str | Path, files: Iterable[str | Path], progress: Progress | None = None) -> int:
    """Add laws / Q&A to an existing KB; each file is one transaction. Returns the number of items added."""
    paths = source_files(files, bundled_if_empty=False)
    total = 0
    with open_store(kb) as store:
        for path in paths:
            added = store.add(read_items(path))
            total += added
            if progress:
                progress(str(path), added)
    return total


def source_files(sources: Iterable[str | Path], bundled_if_empty: bool = True) -> list[Path]:
    """Law Markdown files (folders expanded) and .jsonl files, in the given order; bundled laws if none."""
    sources = [Path(s) for s in sources]
    if not sources:
        if not bundled_if_empty:
            raise LawtuneError("no files given; pass law Markdown files/folders or conversations .jsonl files")
        from lawtune.kb.bundled import bundled_law_paths

        return bundled_law_paths()
    files: list[Path] = []
    for source in sources:
        if source.suffix in (".jsonl", ".json"):
            if not source.is_file():
                raise LawtuneError(f"{source}: no such file (expected conversations JSONL from lawtune prepare, "
                                   "or a JSON array of query/response records)")
            files.append(source)
        elif source.is_dir() or source.suffix == ".md" or not source.exists():
            files.extend(find_law_files([source]))
        else:
            raise LawtuneError(f"{source}: not a law Markdown file (.md), a folder of them, or a conversations .jsonl")
    return files


def _items_with_progress(files: list[Path], progress: Progress | None) -> Iterator[Item]:
    for path in files:
        count = 0
        for item in read_items(path):
            count += 1
            yield item
        if progress:
            progress(str(path), count)


def read_items(path: Path) -> Iterator[Item]:
    if path.suffix == ".jsonl":
        yield from qa_items(path)
        return
    if path.suffix == ".json":
        yield from query_response_items(path)
        return
    law = parse_law_file(path)
    for a in law.articles:
        yield Item(kind="article", text=a.text, law=law.short_name, law_full=law.full_name, article=a.article,
                   sub=a.sub, version=law.version, path=" / ".join(a.path), source=law.source)


def qa_items(path: Path) -> Iterator[Item]:
    """One item per user → assistant pair of each conversation (system turns dropped)."""
    from lawtune.data.conversations import read_examples

    for example in read_examples(path):
        turns = [m for m in example.messages if m["role"] != "system"]
        for user, assistant in zip(turns[::2], turns[1::2]):
            yield qa_item(user["content"], assistant["content"], example.meta.get("laws") or [], path.name)


def query_response_items(path: Path) -> Iterator[Item]:
    """One item per `{"query", "response", "laws"?}` record of a JSON array / JSONL file (Lawyer LLaMA's layout)."""
    from lawtune.data.json_source import iter_json_records

    count = 0
    with path.open(encoding="utf-8") as handle:
        for _line, record in iter_json_records(path, handle):
            if isinstance(record, dict) and isinstance(record.get("query"), str) and isinstance(record.get("response"), str):
                count += 1
                laws = record.get("laws") if isinstance(record.get("laws"), list) else []
                yield qa_item(record["query"], record["response"], laws, path.name)
    if not count:
        raise LawtuneError(f"{path}: no {{\"query\", \"response\"}} records; convert other JSON with lawtune prepare "
                           "and index the .jsonl it writes")


def qa_item(question: str, answer: str, laws: list, source: str = "") -> Item:
    """A Q&A item; the articles in `laws` ("《民法典》第一千零七十六条：text") are appended as citations."""
    cited = [str(law).split("：", 1)[0].strip()[:60] for law in laws if str(law).strip()]
    if cited:
        answer = f"{answer}\n\n相关法条：{'；'.join(cited)}"
    return Item(kind="qa", text=answer, question=question, source=source)
