"""Commands of the tools area: `lawtune tools generate` (tool-use training and test data; docs/tools.md).

Only typer is imported here; the generator (and the tools it runs) load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

tools_app = typer.Typer(help="Built-in legal tools: generate tool-use conversations for training and evaluation.",
                        no_args_is_help=True)

GENERATE_HELP = """Write Chinese tool-use conversations for the built-in tools into OUT: train/dev/test.jsonl + report.json.

Questions state their figures in many forms (8000 / 八千 / 0.8万 / 8k, 3年零5个月 / 41个月 / dates); each tool
question has the exact call, the tool's real result and a final answer citing its articles. Real Q&A questions
answered without a tool, and questions missing a figure (the assistant asks for it), are mixed in.
test.jsonl is held out: evaluate on it (`lawtune eval RUN --data OUT/test.jsonl`), never train on it.

Example:

    lawtune tools generate -o out/tools

    lawtune prepare data/legal_qa_sample.csv -o out && lawtune tools generate -o out/tools --qa out --mix-share 0.25
"""


def generate(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for train/dev/test.jsonl and report.json."),
    n: int = typer.Option(1200, "--n", help="Conversations to write (70 % tool, 20 % no tool, 10 % asked back)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the questions and of the hash split."),
    qa: Optional[Path] = typer.Option(None, "--qa", help="Output folder of `lawtune prepare`: no-tool questions come "
                                      "from it, each in its own split. Default: the bundled sample, prepared."),
    mix_share: Optional[float] = typer.Option(None, "--mix-share", help="Also write OUT/train-mix.jsonl: QA/train.jsonl "
                                              "plus tool training conversations making up this share (needs --qa)."),
    tools_per_record: int = typer.Option(3, "--tools-per-record", help="Tool definitions offered with each question "
                                         "(the needed one among others); 0 = all built-in tools."),
) -> None:
    from rich.console import Console

    from lawtune.tools.generate import run

    report = run(out, n=n, seed=seed, qa_dir=qa, mix_share=mix_share, tools_per_record=tools_per_record)
    console = Console()
    for split, counts in report["counts"].items():
        console.print(f"{split}: " + ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items())))
    if "mix" in report:
        mixed = report["mix"]
        console.print(f"train-mix.jsonl: {mixed['qa_rows']} Q&A + {mixed['tool_rows']} tool-set rows "
                      f"(share {mixed['share']:.2%})")
    console.print(f"wrote {out}/train.jsonl, dev.jsonl, test.jsonl (held out) and report.json")


generate.__doc__ = GENERATE_HELP


def register(app: typer.Typer) -> None:
    """Add `lawtune tools ...` to the root app."""
    tools_app.command("generate")(generate)
    app.add_typer(tools_app, name="tools")
