"""Commands of the modeling area (registered on the root app by `lawtune.cli`).

    lawtune model import                                  # the default Gemma 3 270M (GGUF from PyPI)
    lawtune model import ./chatglm3-6b --trust-remote-code
"""

from __future__ import annotations

from typing import Optional

import typer

model_app = typer.Typer(help="Manage base models (import into the local model cache).", no_args_is_help=True)


@model_app.command("import")
def import_command(
    src: Optional[str] = typer.Argument(None, help="A .gguf file or a local Hugging Face folder; default: the Gemma 3 270M GGUF package."),
    name: Optional[str] = typer.Option(None, "--name", help="Folder name in the model cache (default: derived from SRC)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow models that ship their own Python code (ChatGLM3)."),
    force: bool = typer.Option(False, "--force", help="Re-import even when the model is already in the cache."),
) -> None:
    """Import a base model into the local cache as a Hugging Face folder (never downloads).

    Example: lawtune model import  (then: lawtune train configs/demo.yaml)
    """
    import time

    from rich.console import Console

    from lawtune.modeling.importer import import_model
    from lawtune.modeling.runs import models_dir

    console = Console(stderr=True)
    start = time.monotonic()
    with console.status("importing model (a GGUF takes about a minute, once)…"):
        path = import_model(src, name=name, trust_remote_code=trust_remote_code, force=force)
    console.print(f"model ready in {time.monotonic() - start:.0f} s: {path}")
    if path.parent == models_dir():
        console.print(f"use it as model.name_or_path: {path.name}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(model_app, name="model")
