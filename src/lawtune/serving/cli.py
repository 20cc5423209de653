"""Commands of the serving area (registered on the root app by `lawtune.cli`).

    lawtune serve runs/demo                          # http://127.0.0.1:8000 : chat page + OpenAI API
    lawtune serve runs/demo --port 9000 --max-batch-size 4 --dtype bfloat16
"""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    model: str = typer.Argument(..., help="run folder (base + LoRA adapter), model folder, or imported model name"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (keep loopback unless the gateway guards it)"),
    port: int = typer.Option(8000, help="TCP port"),
    max_batch_size: int = typer.Option(8, help="sequences generated together (continuous batching)"),
    dtype: str = typer.Option("float32", help="float32, bfloat16 (faster on CPUs with AVX512-BF16) or float16"),
    adapter: str = typer.Option("best", help="which adapter of a run: best or final"),
    serve_base: bool = typer.Option(True, "--serve-base/--no-base", help="also serve the run's base model as RUN:base"),
    default_max_tokens: int = typer.Option(512, help="new tokens when a request names no max_tokens"),
    timeout: float = typer.Option(300.0, help="per-request deadline in seconds"),
    max_context: int = typer.Option(None, help="cap prompt + new tokens below the model's own context length"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Serve a model: OpenAI-compatible API (/v1/chat/completions, /v1/models), /healthz, /readyz, chat page at /.

    Example: lawtune serve runs/demo --port 8000   then open http://127.0.0.1:8000/
    """
    from pydantic import ValidationError

    from lawtune.errors import LawtuneError
    from lawtune.modeling.runs import is_run_dir, read_run, resolve_model_path
    from lawtune.serving.settings import ServeSettings

    try:
        settings = ServeSettings(model=model, host=host, port=port, max_batch_size=max_batch_size, dtype=dtype,
                                 adapter=adapter, serve_base=serve_base, default_max_tokens=default_max_tokens,
                                 request_timeout_s=timeout, max_context=max_context, log_level=log_level)
    except ValidationError as error:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in error.errors())
        raise LawtuneError(f"invalid serve options: {problems}") from None
    # fail here, in one line, rather than after uvicorn has started
    if is_run_dir(Path(model)):
        run = read_run(model)
        run.adapter_dir(adapter)
        if not run.base_model.is_dir():
            raise LawtuneError(f"the run's base model {run.base_model} is missing: import it again with `lawtune model import`")
    else:
        resolve_model_path(model)
    run_server(settings)


def run_server(settings) -> None:
    import uvicorn

    from lawtune.serving.app import create_app

    typer.echo(f"lawtune serve: http://{settings.host}:{settings.port}/  (the model loads in the background; "
               f"GET /readyz says when it is ready)")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("serve")(serve)
