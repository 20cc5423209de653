"""Commands of the data area (registered on the root app by `lawtune.cli`): `lawtune prepare`.

Its flags are made from `lawtune.data.policy.PreparePolicy` (`lawtune.settings.option`): defaults and help live
there; tests/test_cli_settings.py fails when a flag and a field drift apart. `prepare --kb` (part of train.jsonl
in the RAG prompt format) needs the knowledge base, a layer above data: its options and its step come from
`lawtune.kb.cli.rag_training_options`, spliced into this command where the root CLI registers it
(`register(app, rag_options=...)`), so nothing here imports `lawtune.kb`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from lawtune.data.policy import PreparePolicy  # light: pydantic only
from lawtune.settings import option, options_of

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
    rag: Any = None,  # the --kb options (lawtune.kb.cli.rag_training_options), spliced in by `register`
) -> None:
    """`rag`: None, or (with --kb) the step that rewrites part of train.jsonl: `rag(train_file, seed)` → counts."""
    from lawtune.data.policy import parse_policy
    from lawtune.data.prepare import run
    from lawtune.data.report import print_summary

    options = dict(format=format, encoding=encoding, user_text=user_text, is_best=is_best, system_prompt=system_prompt,
                   min_chars=min_chars, max_chars=max_chars, dedupe=dedupe, clean=clean, seed=seed,
                   dev_ratio=dev_ratio, test_ratio=test_ratio)
    parse_policy(options, as_flags=True)  # every bad flag named before any work (the --kb ones and the KB itself
    # were checked when `rag` was made)

    report = run(sources, out, progress=True, **options)
    if rag is not None:
        from lawtune.fsutil import atomic_write_json

        report["rag"] = rag(out / "train.jsonl", seed)
        atomic_write_json(out / "report.json", report)
    print_summary(report)
    if rag is not None:
        stats = report["rag"]
        typer.echo(f"RAG format: {stats['rewritten']} of {stats['lines']} training questions (gold article "
                   f"retrieved {stats['retrieved']}, injected {stats['injected']}, left out {stats['left_out']}; "
                   f"{stats['no_gold_known']} candidates without a known gold article left as they were)")


def register(app: typer.Typer, rag_options: Callable[..., Any]) -> None:
    """Add this area's commands to the root app; `rag_options` makes prepare's --kb options and step."""
    app.command("prepare", help=PREPARE_HELP)(options_of("rag", rag_options)(prepare))
