"""Commands of the training area (registered on the root app by `lawtune.cli`).

    lawtune train configs/demo.yaml
    lawtune train configs/lora.yaml training_args.max_steps=200 --resume none
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def train_command(
    config: Path = typer.Argument(..., help="Training YAML (ChatGLM3 lora.yaml layout + model: section)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Dotted key=value overrides, e.g. training_args.max_steps=20."),
    resume: str = typer.Option("auto", "--resume", help="auto (newest complete checkpoint), none (start over) or a step number."),
) -> None:
    """LoRA fine-tune a base model; writes a run folder (adapter, best checkpoint, metrics, loss curve).

    Example: lawtune train configs/demo.yaml training_args.max_steps=50 --resume none
    """
    from rich.console import Console

    from lawtune.training.train import run

    console = Console(stderr=True)
    run_dir = run(config, list(overrides or []), resume=resume)
    from accelerate import PartialState

    from lawtune.memory import peak_rss_mib

    if PartialState().is_main_process:
        console.print(f"run folder: {run_dir}  (peak resident memory {peak_rss_mib():,.0f} MiB)")
        console.print(f"next: lawtune eval {run_dir} --data <test.jsonl>")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("train")(train_command)
