"""Commands of the data area (registered on the root app by `lawtune.cli`): `lawtune prepare`.

Its flags are made from `lawtune.data.policy.PreparePolicy` and `RagTrainingOptions` (`lawtune.settings.option`):
defaults and help live in those classes; tests/test_cli_settings.py fails when a flag and a field drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lawtune.data.policy import PreparePolicy, RagTrainingOptions  # light: pydantic only
from lawtune.settings import option, validate

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
    format: str = option(PreparePolicy, "format"),
    encoding: Optional[str] = option(PreparePolicy, "encoding"),
    user_text: str = option(PreparePolicy, "user_text"),
    is_best: str = option(PreparePolicy, "is_best"),
    system_prompt: Optional[str] = option(PreparePolicy, "system_prompt"),
    min_chars: int = option(PreparePolicy, "min_chars"),
    max_chars: int = option(PreparePolicy, "max_chars"),
    dedupe: bool = option(PreparePolicy, "dedupe", "--dedupe/--no-dedupe"),
    clean: bool = option(PreparePolicy, "clean", "--clean/--no-clean"),
    seed: int = option(PreparePolicy, "seed"),
    dev_ratio: float = option(PreparePolicy, "dev_ratio"),
    test_ratio: float = option(PreparePolicy, "test_ratio"),
    kb: Optional[Path] = option(RagTrainingOptions, "kb"),
    rag_share: float = option(RagTrainingOptions, "rag_share"),
    rag_no_gold: float = option(RagTrainingOptions, "rag_no_gold"),
    kb_k: int = option(RagTrainingOptions, "kb_k"),
) -> None:
    from lawtune.data.policy import parse_policy
    from lawtune.data.prepare import run
    from lawtune.data.report import print_summary
    from lawtune.kb.rag import Rag

    options = dict(format=format, encoding=encoding, user_text=user_text, is_best=is_best, system_prompt=system_prompt,
                   min_chars=min_chars, max_chars=max_chars, dedupe=dedupe, clean=clean, seed=seed,
                   dev_ratio=dev_ratio, test_ratio=test_ratio)
    parse_policy(options, as_flags=True)  # every bad flag named before any work
    rag_options = validate(RagTrainingOptions, dict(kb=kb, rag_share=rag_share, rag_no_gold=rag_no_gold, kb_k=kb_k),
                           "prepare", as_flags=True)
    rag = Rag.open(kb, k=kb_k) if kb is not None else None  # a bad KB fails before any work

    report = run(sources, out, progress=True, **options)
    if rag is not None:
        from lawtune.fsutil import atomic_write_json
        from lawtune.kb.rag_examples import rag_training_file

        with rag:
            report["rag"] = rag_training_file(out / "train.jsonl", rag, share=rag_options.rag_share, seed=seed,
                                              no_gold_share=rag_options.rag_no_gold)
        atomic_write_json(out / "report.json", report)
    print_summary(report)
    if rag is not None:
        stats = report["rag"]
        typer.echo(f"RAG format: {stats['rewritten']} of {stats['lines']} training questions (gold article "
                   f"retrieved {stats['retrieved']}, injected {stats['injected']}, left out {stats['left_out']}; "
                   f"{stats['no_gold_known']} candidates without a known gold article left as they were)")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("prepare", help=PREPARE_HELP)(prepare)
