"""Commands of the serving area (registered on the root app by `lawtune.cli`).

    lawtune serve runs/demo                          # http://127.0.0.1:8000 : chat page + OpenAI API
    lawtune serve runs/demo --port 9000 --max-batch-size 4 --dtype bfloat16
    lawtune serve runs/demo --host 0.0.0.0 --keys-file keys.yaml --rate-limit-storage redis://127.0.0.1:6379/0
    lawtune serve --upstream http://127.0.0.1:8001 --keys-file keys.yaml      # gateway in front of vLLM
    lawtune serve runs/demo --open --kb kb.sqlite --degrade-to-kb             # RAG answers; articles when paused
"""

from __future__ import annotations

from pathlib import Path

import typer

from lawtune.modeling.decoding import DecodingPolicy  # light: no torch; gives the defaults shown in --help

_D = DecodingPolicy()


def serve(
    model: str = typer.Argument(None, help="run folder (base + LoRA adapter), model folder, or imported model name; "
                                "with --upstream, an optional run folder for exact token counts"),
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
    # ---- decoding defaults (docs/serving.md "Decoding"; a request's own penalties win) ----
    repetition_penalty: float = typer.Option(_D.repetition_penalty, help="HF-style penalty on tokens the answer already holds (never the prompt or the end-of-turn token); 1 = off"),
    frequency_penalty: float = typer.Option(_D.frequency_penalty, help="OpenAI-style: minus this × the token's count in the answer; 0 = off"),
    presence_penalty: float = typer.Option(_D.presence_penalty, help="OpenAI-style: minus this once a token is in the answer; 0 = off"),
    no_repeat_ngram_size: int = typer.Option(_D.no_repeat_ngram_size, help="never repeat an n-gram of the answer; 0 = off"),
    repetition_stop: bool = typer.Option(_D.repetition_stop, "--repetition-stop/--no-repetition-stop",
                                         help="end a looping answer at the last sentence before the loop (stop_reason \"repetition\")"),
    # ---- gateway (docs/gateway.md) ----
    upstream: str = typer.Option(None, help="front this OpenAI-compatible engine (e.g. vLLM) instead of loading a model"),
    upstream_key: str = typer.Option(None, envvar="LAWTUNE_UPSTREAM_KEY", help="API key the upstream expects"),
    keys_file: Path = typer.Option(None, help="YAML of hashed API keys (`lawtune keys add`); reloaded when it changes"),
    admin_key: str = typer.Option(None, envvar="LAWTUNE_ADMIN_KEY", help="key for /admin/* (prefer the env var)"),
    open_access: bool = typer.Option(False, "--open", help="no API keys (only allowed on a loopback --host)"),
    rpm: int = typer.Option(60, help="requests per minute per key (a key's own limit wins)"),
    tpm: int = typer.Option(40000, help="tokens per minute per key: prompt + max_tokens up front, corrected after"),
    rate_limit_storage: str = typer.Option("memory://", help="memory:// or redis://HOST:PORT/DB (replicas share it)"),
    queue_size: int = typer.Option(16, help="requests waiting for an engine slot; more → 503 at once"),
    max_concurrency: int = typer.Option(None, help="requests in the engine at once (default: --max-batch-size)"),
    max_body_bytes: int = typer.Option(1_000_000, help="larger request bodies get 413"),
    pause_file: Path = typer.Option(None, envvar="LAWTUNE_PAUSE_FILE", help="exists → paused (服务降级); its text is the notice"),
    paused: bool = typer.Option(False, "--paused", envvar="LAWTUNE_PAUSED", help="start paused"),
    pause_notice: str = typer.Option(None, help="what paused users see (default: a Chinese notice)"),
    breaker_failures: int = typer.Option(5, help="consecutive engine failures that trip the circuit breaker"),
    breaker_cooldown: float = typer.Option(30.0, help="seconds the breaker stays open before a probe"),
    force: bool = typer.Option(False, "--force", help="serve a run whose last `lawtune compare` failed its quality gate"),
    # ---- knowledge base (docs/serving.md "Knowledge base") ----
    kb: str = typer.Option(None, help="knowledge base (`lawtune kb build -o KB`): answer with retrieved articles; "
                           "the response's `lawtune` field lists them and the citation verdicts"),
    kb_k: int = typer.Option(3, help="articles retrieved per question"),
    kb_chars: int = typer.Option(200, help="characters kept of each article"),
    degrade_to_kb: bool = typer.Option(False, "--degrade-to-kb", help="when paused or the breaker is open, answer "
                                       "with the top retrieved articles and the notice instead of 503 (needs --kb)"),
) -> None:
    """Serve a model: OpenAI-compatible API (/v1/chat/completions, /v1/models), /healthz, /readyz, chat page at /.

    Example: lawtune serve runs/demo --port 8000   then open http://127.0.0.1:8000/
    """
    from pydantic import ValidationError

    from lawtune.errors import LawtuneError
    from lawtune.modeling.runs import is_run_dir, read_run, resolve_model_path
    from lawtune.serving.settings import ServeSettings

    from lawtune.serving.gateway.settings import DEFAULT_PAUSE_NOTICE, GatewaySettings

    if degrade_to_kb and kb is None:
        raise LawtuneError("--degrade-to-kb answers from a knowledge base: add --kb KB (`lawtune kb build -o KB`)")
    if model is None and upstream is None:
        raise LawtuneError("give RUN (a run folder, model folder or imported model name), or --upstream URL to "
                           "front an OpenAI-compatible engine; e.g. `lawtune serve runs/demo --open`")

    try:
        gateway = GatewaySettings(
            keys_file=keys_file, admin_key=admin_key, open_access=open_access, requests_per_minute=rpm,
            tokens_per_minute=tpm, rate_limit_storage=rate_limit_storage, queue_size=queue_size,
            max_concurrency=max_concurrency, max_body_bytes=max_body_bytes, pause_file=pause_file, paused=paused,
            pause_notice=pause_notice or DEFAULT_PAUSE_NOTICE, breaker_failures=breaker_failures,
            breaker_cooldown_s=breaker_cooldown)
        settings = ServeSettings(model=model, host=host, port=port, max_batch_size=max_batch_size, dtype=dtype,
                                 adapter=adapter, serve_base=serve_base, default_max_tokens=default_max_tokens,
                                 request_timeout_s=timeout, max_context=max_context, log_level=log_level,
                                 decoding=DecodingPolicy(repetition_penalty=repetition_penalty,
                                                         frequency_penalty=frequency_penalty,
                                                         presence_penalty=presence_penalty,
                                                         no_repeat_ngram_size=no_repeat_ngram_size,
                                                         repetition_stop=repetition_stop),
                                 gateway=gateway, upstream=upstream, upstream_key=upstream_key, kb=kb, kb_k=kb_k,
                                 kb_chars=kb_chars, degrade_to_kb=degrade_to_kb)
    except ValidationError as error:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in error.errors())
        raise LawtuneError(f"invalid serve options: {problems}") from None
    gateway.check_bind(host)  # keys or an explicit --open on loopback, said before anything loads
    if kb is not None:
        from lawtune.kb import open_store

        open_store(kb).close()  # a missing or broken KB is one line here, not a traceback from uvicorn
    if model is not None:
        _check_quality_gate(Path(model), force)
    # fail here, in one line, rather than after uvicorn has started
    if model is None:
        pass  # upstream only (ServeSettings checked one of the two is given)
    elif is_run_dir(Path(model)):
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


def _check_quality_gate(run_dir: Path, force: bool) -> None:
    """Refuse (or, with --force, warn loudly about) a run whose last gated `lawtune compare` failed."""
    from lawtune.errors import LawtuneError
    from lawtune.evaluation.gate import describe, read_verdict

    verdict = read_verdict(run_dir) if run_dir.is_dir() else None
    if verdict is None or verdict.get("passed"):
        return
    detail = describe(verdict) if verdict.get("checks") else verdict.get("error", "")
    if not force:
        raise LawtuneError(f"{run_dir} failed its quality gate in the last `lawtune compare` "
                           f"({verdict.get('report') or run_dir / 'quality_gate.json'}):\n{detail}\n"
                           "train it further, or serve it anyway with --force")
    typer.secho(f"WARNING: serving {run_dir} although it failed its quality gate:\n{detail}",
                fg=typer.colors.RED, bold=True, err=True)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    from lawtune.serving.gateway import cli as gateway_cli

    app.command("serve")(serve)
    gateway_cli.register(app)
