"""Law-article knowledge base: parse statutes, index them with Q&A pairs, retrieve, check citations.

    from lawtune.kb import open_store, format_context
    from lawtune.kb.citations import CitationChecker

    from lawtune.kb.retrieval import Retriever

    with open_store("kb.sqlite") as kb:                  # `lawtune kb build -o kb.sqlite` makes one
        hits = Retriever(kb).search("公司拖欠工资怎么办", k=5)   # [Hit(item=Item(...), score, exact)], best first
        prompt_part = format_context(hits)               # numbered, labelled excerpts for a RAG prompt
        checker = CitationChecker(kb.catalog())
    verdicts = checker.check(answer)                     # [Verdict(citation, verdict, detail)]
    summary = checker.summarize(answers)                 # precision, nonexistent rate, counts

Modules, one job each: numerals (第一千零七十六 ↔ 1076), laws (LawRefBook Markdown → articles), tokenize,
store (the interface and data types), sqlite_store (the embedded backend), postgres_store (PostgreSQL full-text
search), retrieval (the search every caller goes through: a `Retriever` over a store; exact lookup, boosts, re-ranking), names (law names and aliases), repeals, citations, build (kb build /
add), batch (many questions: kb search --queries), bundled (shipped laws), cli.
"""

from __future__ import annotations

from pathlib import Path

from lawtune.kb.store import Catalog, Hit, Item, KnowledgeStore
from lawtune.text import excerpt


def open_store(location: str | Path) -> "KnowledgeStore":
    """Open an existing knowledge base: a SQLite file path, or a `postgresql://user@host:port/db` URL (see
    postgres_store.py); LawtuneError if it is missing, unreachable or not a KB."""
    from lawtune.kb.postgres_store import PostgresStore, is_postgres_url
    from lawtune.kb.sqlite_store import SqliteStore

    if is_postgres_url(location):
        return PostgresStore.open(location)
    return SqliteStore.open(location)


def format_context(hits: list[Hit], max_chars: int = 300) -> str:
    """Hits as numbered excerpts for a prompt: `[资料1] 《劳动合同法》第八十二条（2012-12-28）：…`.

    Labelled 资料N (not 1. 2. …) so the model cannot mistake the list number for an article number;
    each text is cut to `max_chars` characters with an ellipsis.
    """
    blocks = []
    for n, hit in enumerate(hits, 1):
        item = hit.item
        text = excerpt(item.text, max_chars)
        if item.kind == "article":
            version = f"（{item.version}）" if item.version else ""
            blocks.append(f"[资料{n}] {item.cite()}{version}：{text}")
        else:
            blocks.append(f"[资料{n}] 问：{item.question}\n答：{text}")
    return "\n".join(blocks)


__all__ = ["Catalog", "Hit", "Item", "KnowledgeStore", "format_context", "open_store"]
