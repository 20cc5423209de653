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

from lawtune.modeling.decoding import DecodingPolicy  # light: no torch; gives the defaults shown in --help
from lawtune.serving.gateway.settings import GatewaySettings
from lawtune.serving.settings import ServeSettings

# Every `serve` option → the settings field it fills ("gateway." / "decoding." for the nested ones). Defaults
# come from the settings classes; tests/serving/test_serve_cli.py fails when an option and a field drift apart.
FLAG_FIELDS = {
    "model": "model", "host": "host", "port": "port", "max_batch_size": "max_batch_size", "dtype": "dtype",
    "engine": "engine", "gguf_quant": "gguf_quant",
    "adapter": "adapter", "serve_base": "serve_base", "default_max_tokens": "default_max_tokens",
    "timeout": "request_timeout_s", "max_context": "max_context", "log_level": "log_level",
    "served_model_name": "served_model_name", "lora_modules": "lora_modules", "cors_origin": "cors_origins",
    "sse_keepalive": "sse_keepalive_s",
    "repetition_penalty": "decoding.repetition_penalty", "frequency_penalty": "decoding.frequency_penalty",
    "presence_penalty": "decoding.presence_penalty", "no_repeat_ngram_size": "decoding.no_repeat_ngram_size",
    "repetition_stop": "decoding.repetition_stop",
    "upstream": "upstream", "upstream_key": "upstream_key",
    "keys_file": "gateway.keys_file", "admin_key": "gateway.admin_key", "open_access": "gateway.open_access",
    "rpm": "gateway.requests_per_minute", "tpm": "gateway.tokens_per_minute",
    "rate_limit_storage": "gateway.rate_limit_storage", "queue_size": "gateway.queue_size",
    "max_concurrency": "gateway.max_concurrency", "max_body_bytes": "gateway.max_body_bytes",
    "pause_file": "gateway.pause_file", "paused": "gateway.paused", "pause_notice": "gateway.pause_notice",
    "breaker_failures": "gateway.breaker_failures", "breaker_cooldown": "gateway.breaker_cooldown_s",
    "kb": "kb", "kb_k": "kb_k", "kb_chars": "kb_chars", "degrade_to_kb": "degrade_to_kb",
    "tools": "tools", "tool_rounds": "tool_rounds", "tool_timeout": "tool_timeout_s",
}
# settings fields that are no option, and why (the test requires every other field to have one)
NOT_FLAGS = {"gateway.request_timeout_s": "the server's --timeout", "gateway.retry_after_s": "a constant in Python",
             "gateway.degraded_notice": "set in Python", "decoding": "its fields are the --repetition-* options",
             "gateway": "its fields are the gateway options"}
CLI_ONLY = {"force"}  # options that act before serving and configure nothing


def default(path: str) -> Any:
    """A settings field's default (`gateway.queue_size`): the one place `serve`'s defaults come from."""
    head, _, rest = path.partition(".")
    if head == "decoding":
        return getattr(DecodingPolicy(), rest)
    if head == "gateway":
        return GatewaySettings.model_fields[rest].get_default(call_default_factory=True)
    return ServeSettings.model_fields[head].get_default(call_default_factory=True)


_G = "gateway."


def serve(
    model: str = typer.Argument(None, help="run folder (base + LoRA adapter), model folder, or imported model name; "
                                "with --upstream, an optional run folder for exact token counts"),
    host: str = typer.Option(default("host"), help="address to listen on (keep loopback unless the gateway guards it)"),
    port: int = typer.Option(default("port"), help="TCP port"),
    max_batch_size: int = typer.Option(default("max_batch_size"), help="sequences generated together (continuous batching)"),
    dtype: str = typer.Option(default("dtype"), help="auto (bfloat16 where the CPU/GPU has bf16, else float32), float32, bfloat16 or float16"),
    engine: str = typer.Option(default("engine"), help="torch (transformers + PEFT: --lora-modules, the base beside "
                               "the run) or llama.cpp (the run as a quantized GGUF: faster on CPU, one model)"),
    gguf_quant: str = typer.Option(default("gguf_quant"), help="--engine llama.cpp: quantization of the run's GGUF "
                                   "(Q8_0, Q4_K_M, Q5_K_M, Q6_K, Q4_0, or unquantized f16, f32); a base imported from a GGUF runs that file"),
    adapter: str = typer.Option(default("adapter"), help="which adapter of a run: best or final"),
    serve_base: bool = typer.Option(default("serve_base"), "--serve-base/--no-base",
                                    help="also serve the run's base model as RUN:base (alias `base`; no extra memory)"),
    default_max_tokens: int = typer.Option(default("default_max_tokens"), help="new tokens when a request names no max_tokens"),
    timeout: float = typer.Option(default("request_timeout_s"), help="per-request deadline in seconds, from arrival"),
    max_context: int = typer.Option(default("max_context"), help="cap prompt + new tokens below the model's own context length"),
    log_level: str = typer.Option(default("log_level"), help="uvicorn log level"),
    served_model_name: list[str] = typer.Option(None, help="the main model's name in the API (instead of the folder "
                                                "name); repeat it for aliases: --served-model-name legal --served-model-name legal-v2"),
    lora_modules: list[str] = typer.Option(None, help="NAME=RUN: serve another run trained on the same base beside "
                                           "the main one (one copy of the base weights); repeatable"),
    cors_origin: list[str] = typer.Option(None, help="a browser origin allowed to call the API (CORS), e.g. "
                                          "https://chat.example.com; repeatable; default: none"),
    sse_keepalive: float = typer.Option(default("sse_keepalive_s"), help="seconds between `: ping` comments on a "
                                        "stream that waits (proxies cut idle streams); 0 = off"),
    # ---- decoding defaults (docs/serving.md "Decoding"; a request's own penalties win) ----
    repetition_penalty: float = typer.Option(default("decoding.repetition_penalty"), help="HF-style penalty on tokens the answer already holds (never the prompt or the end-of-turn token); 1 = off"),
    frequency_penalty: float = typer.Option(default("decoding.frequency_penalty"), help="OpenAI-style: minus this × the token's count in the answer; 0 = off"),
    presence_penalty: float = typer.Option(default("decoding.presence_penalty"), help="OpenAI-style: minus this once a token is in the answer; 0 = off"),
    no_repeat_ngram_size: int = typer.Option(default("decoding.no_repeat_ngram_size"), help="never repeat an n-gram of the answer; 0 = off"),
    repetition_stop: bool = typer.Option(default("decoding.repetition_stop"), "--repetition-stop/--no-repetition-stop",
                                         help="end a looping answer at the last sentence before the loop (stop_reason \"repetition\")"),
    # ---- gateway (docs/gateway.md) ----
    upstream: str = typer.Option(default("upstream"), help="front this OpenAI-compatible engine (e.g. vLLM) instead of loading a model"),
    upstream_key: str = typer.Option(None, envvar="LAWTUNE_UPSTREAM_KEY", help="API key the upstream expects"),
    keys_file: Path = typer.Option(default(_G + "keys_file"), help="YAML of hashed API keys (`lawtune keys add`); reloaded when it changes"),
    admin_key: str = typer.Option(None, envvar="LAWTUNE_ADMIN_KEY", help="key for /admin/* (prefer the env var)"),
    open_access: bool = typer.Option(default(_G + "open_access"), "--open", help="no API keys (only allowed on a loopback --host)"),
    rpm: int = typer.Option(default(_G + "requests_per_minute"), help="requests per minute per key (a key's own limit wins)"),
    tpm: int = typer.Option(default(_G + "tokens_per_minute"), help="tokens per minute per key: prompt + max_tokens up front, corrected after"),
    rate_limit_storage: str = typer.Option(default(_G + "rate_limit_storage"), help="memory:// or redis://HOST:PORT/DB (replicas share it)"),
    queue_size: int = typer.Option(default(_G + "queue_size"), help="requests waiting for an engine slot; more → 503 at once"),
    max_concurrency: int = typer.Option(default(_G + "max_concurrency"), help="requests in the engine at once (default: --max-batch-size)"),
    max_body_bytes: int = typer.Option(default(_G + "max_body_bytes"), help="larger request bodies get 413"),
    pause_file: Path = typer.Option(default(_G + "pause_file"), envvar="LAWTUNE_PAUSE_FILE", help="exists → paused (服务降级); its text is the notice"),
    paused: bool = typer.Option(default(_G + "paused"), "--paused", envvar="LAWTUNE_PAUSED", help="start paused"),
    pause_notice: str = typer.Option(default(_G + "pause_notice"), help="what paused users see"),
    breaker_failures: int = typer.Option(default(_G + "breaker_failures"), help="consecutive engine failures that trip the circuit breaker"),
    breaker_cooldown: float = typer.Option(default(_G + "breaker_cooldown_s"), help="seconds the breaker stays open before a probe"),
    force: bool = typer.Option(False, "--force", help="serve a run whose last `lawtune compare` failed its quality gate"),
    # ---- knowledge base (docs/serving.md "Knowledge base") ----
    kb: str = typer.Option(default("kb"), help="knowledge base (`lawtune kb build -o KB`): answer with retrieved articles; "
                           "the response's `lawtune` field lists them and the citation verdicts"),
    kb_k: int = typer.Option(default("kb_k"), help="articles retrieved per question"),
    kb_chars: int = typer.Option(default("kb_chars"), help="characters kept of each article"),
    degrade_to_kb: bool = typer.Option(default("degrade_to_kb"), "--degrade-to-kb", help="when paused or the breaker is "
                                       "open, answer with the top retrieved articles and the notice instead of 503 (needs --kb)"),
    # ---- server-side tools (docs/serving.md "Tools") ----
    tools: str = typer.Option(default("tools"), help="builtin: requests without `tools` of their own are answered "
                              "through the built-in legal tools (the agent loop; + article lookup with --kb)"),
    tool_rounds: int = typer.Option(default("tool_rounds"), help="tool rounds at most per request"),
    tool_timeout: float = typer.Option(default("tool_timeout_s"), help="seconds a tool may run before its call fails"),
) -> None:
    """Serve a model: OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models), /healthz,
    /readyz, chat page at /.

    Example: lawtune serve runs/demo --port 8000   then open http://127.0.0.1:8000/
    """
    from lawtune.errors import LawtuneError
    from lawtune.modeling.runs import is_run_dir, read_run, resolve_model_path

    if degrade_to_kb and kb is None:
        raise LawtuneError("--degrade-to-kb answers from a knowledge base: add --kb KB (`lawtune kb build -o KB`)")
    if model is None and upstream is None:
        raise LawtuneError("give RUN (a run folder, model folder or imported model name), or --upstream URL to "
                           "front an OpenAI-compatible engine; e.g. `lawtune serve runs/demo --open`")
    values = {name: value for name, value in locals().items() if name in FLAG_FIELDS}
    values["lora_modules"] = _lora_modules(lora_modules or [])
    settings = settings_from_flags(values)
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


def settings_from_flags(values: dict[str, Any]) -> ServeSettings:
    """`serve`'s option values (by parameter name) → ServeSettings; a bad value is one error naming its flag."""
    from pydantic import ValidationError

    from lawtune.errors import LawtuneError

    fields: dict[str, Any] = {"gateway": {}, "decoding": {}}
    for name, value in values.items():
        path = FLAG_FIELDS[name]
        if value is None or value == []:
            continue  # the settings' own default
        head, _, rest = path.partition(".")
        if rest:
            fields[head][rest] = value
        else:
            fields[head] = value
    try:
        fields["decoding"] = DecodingPolicy(**fields["decoding"])
        fields["gateway"] = GatewaySettings(**fields["gateway"])
        return ServeSettings(**fields)
    except LawtuneError as error:  # DecodingPolicy's own checks say the field; name the flag too
        raise LawtuneError(f"invalid serve options: {error}".replace("bad decoding settings: ", "")
                           .replace("repetition_penalty", "--repetition-penalty")
                           .replace("frequency_penalty", "--frequency-penalty")
                           .replace("presence_penalty", "--presence-penalty")
                           .replace("no_repeat_ngram_size", "--no-repeat-ngram-size")) from None
    except ValidationError as error:
        where = "gateway." if error.title == "GatewaySettings" else ""
        problems = "; ".join(f"{flag_for(where + '.'.join(map(str, e['loc'])))}: {e['msg']}" for e in error.errors())
        raise LawtuneError(f"invalid serve options: {problems}") from None


def flag_for(path: str) -> str:
    """The `serve` flag that sets a settings field (`gateway.queue_size` → `--queue-size`)."""
    for name, field_path in FLAG_FIELDS.items():
        if path == field_path or path.startswith(field_path + "."):
            return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
    return path


# flags whose name is not the parameter's (typer's "--serve-base/--no-base" etc.)
FLAG_NAMES = {"serve_base": "--serve-base/--no-base", "open_access": "--open", "model": "RUN",
              "repetition_stop": "--repetition-stop/--no-repetition-stop"}


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
