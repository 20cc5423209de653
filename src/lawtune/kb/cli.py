"""Commands of the knowledge-base area: `lawtune kb build / add / search / check` (see docs/knowledge-base.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from lawtune.data.policy import RagTrainingOptions  # light: pydantic only
from lawtune.settings import option, validate

kb_app = typer.Typer(help="Law-article knowledge base: build, add, search, check citations.", no_args_is_help=True)

BUILD_HELP = """Index law articles (LawRefBook Markdown) and Q&A pairs (conversations JSONL, or {"query", "response",
"laws"} JSON) into one SQLite file. Q&A whose answers cite articles let search bridge everyday wording to them.

With no SRC, the laws bundled with lawtune (民法典, 刑法, 劳动法, 劳动合同法, 消费者权益保护法, 道路交通安全法, …).
The file is written atomically: it appears complete or not at all.

Example:

    lawtune kb build -o kb.sqlite

    lawtune kb build ../shared/data/raw/laws_lawrefbook out/train.jsonl -o kb.sqlite --force

    lawtune kb build --bundled ../shared/data/raw/lawyer_llama/zixun_gpt4.json -o kb.sqlite

    lawtune kb build -o postgresql://lawtune@127.0.0.1:5432/lawtune   (PostgreSQL: pip install 'lawtune[postgres]')
"""

ADD_HELP = """Add laws or Q&A pairs to an existing knowledge base; searchable as soon as it returns (no rebuild).

Example:

    lawtune kb add kb.sqlite out/train.jsonl

    lawtune kb add kb.sqlite laws/公司法(2023-12-29).md
"""

SEARCH_HELP = """Search a knowledge base: named articles first (劳动合同法第82条), then BM25 over law text.

Example:

    lawtune kb search kb.sqlite "离婚需要什么材料" -k 5

    lawtune kb search kb.sqlite "民法典第一千零七十六条" --json

    lawtune kb search kb.sqlite --queries questions.jsonl --json -k 20 --articles-only

With --queries FILE (one question per line, or JSON lines with a "question" or "query" field and an optional
"id"), every question is searched in one process and one JSON line {"id"?, "question", "hits": [...]} is
printed per question, in input order; a progress bar goes to stderr.
"""

CHECK_HELP = """Check every 《法名》第N条 citation in a file of answers: ok, outdated, repealed, nonexistent_article,
unknown_law; prints counts, citation precision and the nonexistent-citation rate.

Input: the predictions.jsonl of `lawtune eval` (field `prediction`), or a text file with one answer per line.

Example:

    lawtune kb check kb.sqlite runs/demo/eval/predictions.jsonl

    lawtune kb check kb.sqlite answers.txt --json --details
"""


def build(
    sources: Optional[list[Path]] = typer.Argument(None, help="law .md files / folders, conversations .jsonl and query/response .json files (default: the bundled laws)"),
    out: Path = typer.Option(..., "--out", "-o", help="knowledge-base file to write, or a postgresql://user@host:port/db URL"),
    bundled: bool = typer.Option(False, "--bundled", help="also index the bundled laws when SRC is given"),
    tokenizer: str = typer.Option("bigram", "--tokenizer", help="bigram | jieba | jieba+bigram (see docs/knowledge-base.md)"),
    force: bool = typer.Option(False, "--force", help="replace an existing OUT"),
) -> None:
    from lawtune.errors import LawtuneError
    from lawtune.kb.build import build as run_build, source_files
    from lawtune.kb.bundled import bundled_law_paths
    from lawtune.kb.postgres_store import PostgresStore, is_postgres_url, shown_url

    shown = out
    if is_postgres_url(out):  # a server database (typer's Path collapsed the URL's //, shown_url restores it)
        shown = shown_url(out)
        if not force and PostgresStore.exists(out):
            raise LawtuneError(f"{shown}: already holds a knowledge base; pass --force to replace it, "
                               f"or `lawtune kb add {shown} FILE...`")
    elif out.exists() and not force:
        raise LawtuneError(f"{out}: already exists; pass --force to replace it, or `lawtune kb add {out} FILE...`")
    files = source_files(sources or [])
    if sources and bundled:
        files = bundled_law_paths() + files
    phases: dict[str, float] = {}
    with _progress(len(files), "indexing") as advance, _step_progress("training the retriever") as train:
        counts = run_build(files, out, tokenizer=tokenizer, progress=advance, train_progress=train, phases=phases)
    typer.echo(f"{shown}: {counts.get('article', 0)} articles, {counts.get('qa', 0)} Q&A pairs from {len(files)} files")
    typer.echo("phases (wall s): " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases.items()))


def add(
    kb: Path = typer.Argument(..., help="knowledge-base file made by `lawtune kb build`"),
    files: list[Path] = typer.Argument(..., help="law .md files / folders and conversations .jsonl files"),
) -> None:
    from lawtune.kb.build import add_files, source_files

    paths = source_files(files, bundled_if_empty=False)
    with _progress(len(paths), "adding") as advance:
        added = add_files(kb, paths, progress=advance)
    from lawtune.kb.postgres_store import is_postgres_url, shown_url

    typer.echo(f"{shown_url(kb) if is_postgres_url(kb) else kb}: added {added} items; searchable now")


def search(
    kb: Path = typer.Argument(..., help="knowledge-base file"),
    query: Optional[str] = typer.Argument(None, help="question, or a citation like 劳动合同法第82条 (or give --queries)"),
    queries: Optional[Path] = typer.Option(None, "--queries", help="file of questions: one per line, or JSON lines with a \"question\" field; prints one JSON line per question"),
    k: int = typer.Option(5, "-k", min=1, max=100, help="number of results"),
    all_versions: bool = typer.Option(False, "--all-versions", help="also return articles the current versions no longer have (outdated versions, repealed laws)"),
    kind: str = typer.Option("all", "--kind", help="all | article | qa"),
    articles_only: bool = typer.Option(False, "--articles-only", help="articles only (= --kind article): Q&A items still vote, but are not returned"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line: law, article, sub, score, text, ..."),
) -> None:
    import json

    from lawtune.errors import LawtuneError
    from lawtune.kb import open_store
    from lawtune.kb.retrieval import Retriever

    if articles_only:
        if kind not in ("all", "article"):
            raise LawtuneError(f"--articles-only with --kind {kind}: give one of them")
        kind = "article"
    kinds = {"all": ("article", "qa"), "article": ("article",), "qa": ("qa",)}.get(kind)
    if kinds is None:
        raise LawtuneError(f"--kind {kind!r}: choose all, article or qa")
    if (query is None) == (queries is None):
        raise LawtuneError("give a QUERY or --queries FILE (one of them): "
                           "lawtune kb search kb.sqlite \"离婚需要什么材料\"  or  --queries questions.txt --json")
    if queries is not None:
        _search_batch(kb, queries, k, not all_versions, kinds)
        return
    with open_store(kb) as store:
        hits = Retriever(store).search(query, k, current_only=not all_versions, kinds=kinds)
    if as_json:
        for hit in hits:
            typer.echo(json.dumps(hit.to_json(), ensure_ascii=False))
        return
    if not hits:
        typer.echo("no match")
    for n, hit in enumerate(hits, 1):
        item = hit.item
        score = "exact" if hit.exact else f"{hit.score:.2f}"
        where = f"{item.cite()} ({item.version}{'' if item.current else ', not current'})" if item.kind == "article" else f"Q&A: {item.question}"
        if hit.via:  # the older wording matched
            version, article = hit.via.split(" ", 1)
            where += f", matched as {article} of the {version} version"
        typer.secho(f"{n}. {where}  score {score}", bold=True)
        typer.echo(f"   {item.text}\n")


def _search_batch(kb: Path, path: Path, k: int, current_only: bool, kinds: tuple[str, ...]) -> None:
    """`kb search --queries`: every line read (and checked) first, then one store for all; JSON lines out."""
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lawtune.kb import open_store
    from lawtune.kb.batch import read_queries, search_many
    from lawtune.kb.retrieval import Retriever

    questions = read_queries(path)
    with open_store(kb) as store, Progress(TextColumn("searching"), BarColumn(), MofNCompleteColumn(),
                                           TimeElapsedColumn(), console=Console(stderr=True), transient=True,
                                           disable=len(questions) < 20) as bar:
        task = bar.add_task("searching", total=len(questions))
        for result in search_many(Retriever(store), questions, k, current_only=current_only, kinds=kinds,
                                  progress=lambda: bar.advance(task)):
            typer.echo(json.dumps(result.to_json(), ensure_ascii=False))


def check(
    kb: Path = typer.Argument(..., help="knowledge-base file"),
    predictions: Path = typer.Argument(..., help="predictions.jsonl of `lawtune eval`, or a text file (one answer per line)"),
    field: str = typer.Option("prediction", "--field", help="JSONL field holding the answer"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
    details: bool = typer.Option(False, "--details", help="also list every citation with its verdict"),
) -> None:
    import json

    from lawtune.kb.check import check_file
    from lawtune.kb.citations import VERDICTS

    summary, rows = check_file(kb, predictions, field)
    if as_json:
        record = summary.to_json()
        if details:
            record["answers_detail"] = rows
        typer.echo(json.dumps(record, ensure_ascii=False))
        return
    if details:
        for row in rows:
            for c in row["citations"]:
                typer.echo(f"line {row['line']}: {c['text']}  {c['verdict']}  {c['detail']}")
    typer.echo(f"answers: {summary.answers}, with citations: {summary.answers_with_citations}, citations: {summary.citations}")
    for verdict in VERDICTS:
        typer.echo(f"  {verdict:<20} {summary.verdicts[verdict]}")
    typer.echo(f"citation precision: {summary.precision:.3f}   nonexistent-citation rate: {summary.nonexistent_rate:.3f}")


def _progress(total: int, label: str):
    """A rich progress bar over files; yields the callback build/add call after each file."""
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    @contextlib.contextmanager
    def bar():
        with Progress(TextColumn(f"{label} {{task.fields[file]}}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), transient=True) as progress:
            task = progress.add_task(label, total=total, file="")
            yield lambda path, count: progress.update(task, advance=1, file=Path(path).name)
    return bar()


def _step_progress(label: str):
    """A rich progress bar over steps, shown from the first call of the callback it yields: (step, steps)."""
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    @contextlib.contextmanager
    def bar():
        with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=True) as progress:
            task = None

            def advance(step: int, steps: int) -> None:
                nonlocal task
                if task is None:
                    task = progress.add_task(label, total=steps)
                progress.update(task, completed=step)
            yield advance
    return bar()


def rag_training_options(
    kb: Optional[Path] = option(RagTrainingOptions, "kb"),
    rag_share: float = option(RagTrainingOptions, "rag_share"),
    rag_no_gold: float = option(RagTrainingOptions, "rag_no_gold"),
    kb_k: int = option(RagTrainingOptions, "kb_k"),
) -> Any:
    """`lawtune prepare`'s --kb options (spliced into lawtune.data.cli.prepare by the root CLI: kb sits above
    data) → None without --kb, else the step `rewrite(train_file, seed)` → counts that asks part of train.jsonl
    in the RAG prompt format (lawtune.kb.rag_examples). Bad options and a bad KB fail here, before any work."""
    options = validate(RagTrainingOptions, dict(kb=kb, rag_share=rag_share, rag_no_gold=rag_no_gold, kb_k=kb_k),
                       "prepare", as_flags=True)
    if kb is None:
        return None
    from lawtune.kb.rag import Rag

    rag = Rag.open(kb, k=kb_k)

    def rewrite(train_file: Path, seed: int) -> dict[str, Any]:
        from lawtune.kb.rag_examples import rag_training_file

        with rag:
            return rag_training_file(train_file, rag, share=options.rag_share, seed=seed,
                                     no_gold_share=options.rag_no_gold)

    return rewrite


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    kb_app.command("build", help=BUILD_HELP)(build)
    kb_app.command("add", help=ADD_HELP)(add)
    kb_app.command("search", help=SEARCH_HELP)(search)
    kb_app.command("check", help=CHECK_HELP)(check)
    app.add_typer(kb_app, name="kb")
