"""The `export` command (registered on the root app by `lawtune.cli`); the work is in export.py.

    lawtune export runs/demo --to gguf -o out/export/gguf
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def export_command(
    run_dir: Path = typer.Argument(..., help="The run folder (what `lawtune train` wrote)."),
    to: str = typer.Option(..., "--to", help="merged | gguf | gguf-lora | ollama | vllm (docs/export.md)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (written whole or not at all)."),
    adapter: str = typer.Option("best", "--adapter", help="best (the best dev checkpoint, what reports measure) or final."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Float type of the weights: f32, f16 or bf16 (default: bf16 for merged, f16 for GGUF files)."),
    quant: str = typer.Option("Q8_0", "--quant", help="llama.cpp quantization of the GGUF model (gguf) or of a converted base (gguf-lora): Q8_0, Q4_K_M, Q5_K_M, Q6_K, Q4_0 or none. Q8_0 by default: a Q4_K_M of the merged default model answers differently from the first token (docs/export.md)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output folder."),
) -> None:
    """Export a run for the engines people run: transformers / vLLM (merged, vllm), llama.cpp / Ollama (gguf, gguf-lora, ollama).

    Example: lawtune export runs/demo --to gguf -o out/export/gguf
    """
    from rich.console import Console

    from lawtune.export.export import run

    console = Console(stderr=True)
    run(run_dir, to, out, adapter=adapter, dtype=dtype, quant=quant, force=force, say=console.print)


def register(app: typer.Typer) -> None:
    """Add `export` to the root app."""
    app.command("export")(export_command)
