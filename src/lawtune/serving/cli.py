"""Commands of the serving area (registered on the root app by `lawtune.cli`).

    lawtune serve runs/demo                          # http://127.0.0.1:8000 : chat page + OpenAI API
    lawtune serve runs/demo --port 9000 --max-batch-size 4 --dtype bfloat16
    lawtune serve runs/demo --engine llama.cpp --gguf-quant Q8_0            # the run as a GGUF on llama.cpp
    lawtune serve runs/demo --host 0.0.0.0 --keys-file keys.yaml --rate-limit-storage redis://127.0.0.1:6379/0
    lawtune serve --upstream http://127.0.0.1:8001 --keys-file keys.yaml      # gateway in front of vLLM
    lawtune serve runs/demo --open --kb kb.sqlite --degrade-to-kb             # RAG answers; articles when paused
    lawtune serve runs/demo --open --tools builtin                            # the agent loop over the legal tools
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from lawtune.modeling.decoding import DecodingPolicy  # light: pydantic only
from lawtune.modeling.decoding_options import decoding_options
from lawtune.serving.settings import ServeSettings
from lawtune.settings import option, options_of

# The options are made from ServeSettings (`lawtune.settings.option`: nested ones by their dotted paths, e.g.
# `gateway.queue_size` is --queue-size); tests/test_cli_settings.py fails when an option and a field drift apart.
# Options whose name is not their field's (the rest are the field's own name, or its last part when nested):
RENAMED = {"timeout": "request_timeout_s", "cors_origin": "cors_origins", "sse_keepalive": "sse_keepalive_s",
           "rpm": "gateway.requests_per_minute", "tpm": "gateway.tokens_per_minute",
           "breaker_cooldown": "gateway.breaker_cooldown_s", "tool_timeout": "tool_timeout_s",
           "cite_constraint": "kb_cite_constraint"}
FLAGS = {"open_access": "--open", "cite_constraint": "--cite-constraint"}  # a flag that is not its parameter's name
CLI_ONLY = {"force"}  # options that act before serving and configure nothing
# settings fields that are no option, and why
NOT_OPTIONS = {"gateway.request_timeout_s": "the server's --timeout", "gateway.retry_after_s": "a constant in Python",
               "gateway.degraded_notice": "set in Python"}


def _option(path: str, *decls: str, help: str, **kwargs: Any) -> Any:
    return option(ServeSettings, path, *decls, help=help, **kwargs)


@options_of("decoding", decoding_options)  # decoding defaults (docs/serving.md "Decoding"; a request's own penalties win)
def serve(
    model: str = typer.Argument(None, help="run folder (base + LoRA adapter), model folder, or imported model name; "
                                "with --upstream, an optional run folder for exact token counts"),
    host: str = _option("host", help="address to listen on (keep loopback unless the gateway guards it)"),
    port: int = _option("port", help="TCP port"),
    max_batch_size: int = _option("max_batch_size", help="sequences generated together (continuous batching)"),
    dtype: str = _option("dtype", help="auto (bfloat16 where the CPU/GPU has bf16, else float32), float32, bfloat16 or float16"),
    engine: str = _option("engine", help="torch (transformers + PEFT: --lora-modules, the base beside "
                          "the run) or llama.cpp (the run as a quantized GGUF: faster on CPU, one model)"),
    gguf_quant: str = _option("gguf_quant", help="--engine llama.cpp: quantization of the run's GGUF "
                              "(Q8_0, Q4_K_M, Q5_K_M, Q6_K, Q4_0, or unquantized f16, f32); a base imported from a GGUF runs that file"),
    threads: int = _option("threads", help="CPU threads of the engine (default: all CPUs; on a machine "
                           "busy with other jobs 1 thread or OMP_WAIT_POLICY=PASSIVE answers faster, docs/serving.md)"),
    adapter: str = _option("adapter", help="which adapter of a run: best or final"),
    serve_base: bool = _option("serve_base", "--serve-base/--no-base",
                               help="also serve the run's base model as RUN:base (alias `base`; no extra memory)"),
    default_max_tokens: int = _option("default_max_tokens", help="new tokens when a request names no max_tokens"),
    timeout: float = _option("request_timeout_s", "--timeout", help="per-request deadline in seconds, from arrival"),
    max_context: int = _option("max_context", help="cap prompt + new tokens below the model's own context length"),
    log_level: str = _option("log_level", help="uvicorn log level"),
    served_model_name: list[str] = _option("served_model_name", default=None, help="the main model's name in the API (instead of the folder "
                                           "name); repeat it for aliases: --served-model-name legal --served-model-name legal-v2"),
    lora_modules: list[str] = _option("lora_modules", default=None, help="NAME=RUN: serve another run trained on the same base beside "
                                      "the main one (one copy of the base weights); repeatable"),
    cors_origin: list[str] = _option("cors_origins", "--cors-origin", default=None, help="a browser origin allowed to call the API (CORS), e.g. "
                                     "https://chat.example.com; repeatable; default: none"),
    sse_keepalive: float = _option("sse_keepalive_s", "--sse-keepalive", help="seconds between `: ping` comments on a "
                                   "stream that waits (proxies cut idle streams); 0 = off"),
    decoding: DecodingPolicy = None,  # the decoding flags (lawtune.modeling.decoding_options), spliced in here
    # ---- gateway (docs/gateway.md) ----
    upstream: str = _option("upstream", help="front this OpenAI-compatible engine (e.g. vLLM) instead of loading a model"),
    upstream_key: str = _option("upstream_key", envvar="LAWTUNE_UPSTREAM_KEY", help="API key the upstream expects"),
    keys_file: Path = _option("gateway.keys_file", help="YAML of hashed API keys (`lawtune keys add`); reloaded when it changes"),
    admin_key: str = _option("gateway.admin_key", envvar="LAWTUNE_ADMIN_KEY", help="key for /admin/* (prefer the env var)"),
    open_access: bool = _option("gateway.open_access", "--open", help="no API keys (only allowed on a loopback --host)"),
    rpm: int = _option("gateway.requests_per_minute", "--rpm", help="requests per minute per key (a key's own limit wins)"),
    tpm: int = _option("gateway.tokens_per_minute", "--tpm", help="tokens per minute per key: prompt + max_tokens up front, corrected after"),
    rate_limit_storage: str = _option("gateway.rate_limit_storage", help="memory:// or redis://HOST:PORT/DB (replicas share it)"),
    queue_size: int = _option("gateway.queue_size", help="requests waiting for an engine slot; more → 503 at once"),
    max_concurrency: int = _option("gateway.max_concurrency", help="requests in the engine at once (default: --max-batch-size)"),
    max_body_bytes: int = _option("gateway.max_body_bytes", help="larger request bodies get 413"),
    pause_file: Path = _option("gateway.pause_file", envvar="LAWTUNE_PAUSE_FILE", help="exists → paused (服务降级); its text is the notice"),
    paused: bool = _option("gateway.paused", "--paused", envvar="LAWTUNE_PAUSED", help="start paused"),
    pause_notice: str = _option("gateway.pause_notice", help="what paused users see"),
    breaker_failures: int = _option("gateway.breaker_failures", help="consecutive engine failures that trip the circuit breaker"),
    breaker_cooldown: float = _option("gateway.breaker_cooldown_s", "--breaker-cooldown", help="seconds the breaker stays open before a probe"),
    force: bool = typer.Option(False, "--force", help="serve a run whose last `lawtune compare` failed its quality gate"),
    # ---- knowledge base (docs/serving.md "Knowledge base") ----
    kb: str = _option("kb", help="knowledge base (`lawtune kb build -o KB`): answer with retrieved articles; "
                      "the response's `lawtune` field lists them and the citation verdicts"),
    kb_k: int = _option("kb_k", help="articles retrieved per question"),
    kb_chars: int = _option("kb_chars", help="characters kept of each article"),
    cite_constraint: bool = _option("kb_cite_constraint", "--cite-constraint/--no-cite-constraint", help="with --kb on a "
                                    "local engine: article numbers only from the retrieved articles (as eval decodes)"),
    degrade_to_kb: bool = _option("degrade_to_kb", "--degrade-to-kb", help="when paused or the breaker is "
                                  "open, answer with the top retrieved articles and the notice instead of 503 (needs --kb)"),
    # ---- server-side tools (docs/serving.md "Tools") ----
    tools: str = _option("tools", help="builtin: requests without `tools` of their own are answered "
                         "through the built-in legal tools (the agent loop; + article lookup with --kb)"),
    tool_rounds: int = _option("tool_rounds", help="tool rounds at most per request"),
    tool_timeout: float = _option("tool_timeout_s", "--tool-timeout", help="seconds a tool may run before its call fails"),
) -> None:
    """Serve a model: OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models), /healthz,
    /readyz, chat page at /.

    Example: lawtune serve runs/demo --port 8000   then open http://127.0.0.1:8000/
    """
    values = {name: value for name, value in locals().items() if name not in CLI_ONLY}  # the options, first thing
    from lawtune.errors import LawtuneError
    from lawtune.modeling.runs import is_run_dir, read_run, resolve_model_path

    if degrade_to_kb and kb is None:
        raise LawtuneError("--degrade-to-kb answers from a knowledge base: add --kb KB (`lawtune kb build -o KB`)")
    if model is None and upstream is None:
        raise LawtuneError("give RUN (a run folder, model folder or imported model name), or --upstream URL to "
                           "front an OpenAI-compatible engine; e.g. `lawtune serve runs/demo --open`")
    values["lora_modules"] = _lora_modules(lora_modules or [])
    settings = settings_from_options(values)
    settings.gateway.check_bind(host)  # keys or an explicit --open on loopback, said before anything loads
    if kb is not None:
        from lawtune.kb import open_store

        open_store(kb).close()  # a missing or broken KB is one line here, not a traceback from uvicorn
    # fail here, in one line, rather than after uvicorn has started
    for folder in [model, *settings.lora_modules.values()] if model is not None else []:
        _check_quality_gate(Path(folder), force)
        if is_run_dir(Path(folder)):
            run = read_run(folder)
            run.adapter_dir(adapter)
            if not run.base_model.is_dir():
                raise LawtuneError(f"the run's base model {run.base_model} is missing: import it again with `lawtune model import`")
        else:
            resolve_model_path(folder)
    run_server(settings)


def _lora_modules(items: list[str]) -> dict[str, str]:
    from lawtune.errors import LawtuneError

    modules = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise LawtuneError(f"--lora-modules {item!r}: write NAME=RUN, e.g. --lora-modules contracts=runs/contracts")
        modules[name] = folder
    return modules


def settings_from_options(values: dict[str, Any]) -> ServeSettings:
    """`serve`'s option values (by parameter name) → ServeSettings; a bad value is one error naming its flag."""
    from lawtune.settings import from_options

    return from_options(ServeSettings, values, "serve", renamed=RENAMED, flags=FLAGS)


def run_server(settings) -> None:
    import uvicorn

    from lawtune.serving.app import create_app

    typer.echo(f"lawtune serve: http://{settings.host}:{settings.port}/  (the model loads in the background; "
               f"GET /readyz says when it is ready)")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    from lawtune.memory import peak_rss_mib

    typer.echo(f"lawtune serve: stopped; peak resident memory {peak_rss_mib():,.0f} MiB")


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
