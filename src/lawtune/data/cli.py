"""Commands of the data area (registered on the root app by `lawtune.cli`): `lawtune prepare`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

PREPARE_HELP = """Turn legal Q&A files into train/dev/test conversations JSONL plus report.json.

Sources: the seed CSV (title,question,reply,is_best), alpaca JSON/JSONL, query/response JSON,
sharegpt, or conversations JSONL; format and encoding (utf-8, utf-8-sig, gb18030) are detected.
Broken rows are skipped and counted with their line numbers in OUT_DIR/report.json.

Example:

    lawtune prepare data/legal_qa_sample.csv -o out/

    lawtune prepare qa.csv more.json -o out/ --is-best best-per-title --system-prompt "你是一名律师" --seed 1

    lawtune prepare data/article_cited/legal_counsel_with_article_v2.json -o out/rag --kb kb.sqlite --rag-share 0.5
"""


def prepare(
    sources: list[Path] = typer.Argument(..., help="CSV / JSON / JSONL files, read in order"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder for train/dev/test.jsonl and report.json"),
    format: str = typer.Option("auto", "--format", help="auto | csv | alpaca | query_response | sharegpt | conversations"),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="input encoding (default: detect utf-8 / utf-8-sig / gb18030)"),
    user_text: str = typer.Option("both", "--user-text", help="CSV user turn: title | question | both (title + body unless the body copies it)"),
    is_best: str = typer.Option("all", "--is-best", help="CSV answers: all | best (is_best=1 only) | best-per-title (one per title, best first)"),
    system_prompt: Optional[str] = typer.Option(None, "--system-prompt", help="system turn added to conversations without one"),
    min_chars: int = typer.Option(4, "--min-chars", help="drop rows whose question or answer has fewer characters"),
    max_chars: int = typer.Option(4000, "--max-chars", help="drop rows whose question or answer has more characters (0 = no limit)"),
    dedupe: bool = typer.Option(True, "--dedupe/--no-dedupe", help="drop repeats of the same normalized question + answer"),
    clean: bool = typer.Option(True, "--clean/--no-clean", help="strip HTML tags/entities, zero-width characters, whitespace runs"),
    seed: int = typer.Option(0, "--seed", help="salt of the split hash"),
    dev_ratio: float = typer.Option(0.05, "--dev-ratio", help="share of questions in dev.jsonl"),
    test_ratio: float = typer.Option(0.05, "--test-ratio", help="share of questions in test.jsonl"),
    kb: Optional[Path] = typer.Option(None, "--kb", help="knowledge base: rewrite --rag-share of train.jsonl in the --kb prompt format (gold articles from meta.laws + retrieved distractors)"),
    rag_share: float = typer.Option(0.5, "--rag-share", help="share of training questions asked with articles (with --kb)"),
    rag_no_gold: float = typer.Option(0.25, "--rag-no-gold", help="share of those whose articles leave the gold out (with --kb)"),
    kb_k: int = typer.Option(3, "--kb-k", help="articles per RAG training prompt (with --kb)"),
) -> None:
    from lawtune.data.prepare import run
    from lawtune.data.report import print_summary
    from lawtune.kb.rag import Rag

    rag = Rag.open(kb, k=kb_k) if kb is not None else None  # a bad KB fails before any work

    report = run(
        sources, out, progress=True, format=format, encoding=encoding, user_text=user_text, is_best=is_best,
        system_prompt=system_prompt, min_chars=min_chars, max_chars=max_chars, dedupe=dedupe, clean=clean,
        seed=seed, dev_ratio=dev_ratio, test_ratio=test_ratio,
    )
    if rag is not None:
        from lawtune.fsutil import atomic_write_json
        from lawtune.kb.rag_examples import rag_training_file

        with rag:
            report["rag"] = rag_training_file(out / "train.jsonl", rag, share=rag_share, seed=seed,
                                              no_gold_share=rag_no_gold)
        atomic_write_json(out / "report.json", report)
    print_summary(report)
    if rag is not None:
        stats = report["rag"]
        typer.echo(f"RAG format: {stats['rewritten']} of {stats['lines']} training questions "
                   f"({stats['with_gold']} with their gold articles, {stats['without_gold']} without)")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("prepare", help=PREPARE_HELP)(prepare)
