"""The FastAPI app: OpenAI-compatible chat completions, completions, models, health, readiness, chat page.

    lawtune serve runs/demo                      # the CLI builds ServeSettings and runs this app in uvicorn
    app = create_app(ServeSettings(model="runs/demo"))             # or in Python
    app = create_app(settings, engine=my_engine)                  # any `Engine` (e.g. an UpstreamEngine)

One request, top to bottom (docs/architecture.md, "A chat request"): the schema (`protocol.py`) has validated
it; the gateway charges it first (`_charge_first`: switch, breaker, the key's limits charged
`body.token_estimate`; the key and its request count were taken by the gateway's middleware) — before any work
whose cost grows with the body — then retrieval (--kb), the engine tokenizes the prompt once (`engine.prompt`,
off the event loop), `body.to_generation` checks it fits the context and makes the engine's request, the
gateway corrects the charge to the exact count and gives it a queue slot and its deadline (`_serve`), the
engine generates, and a shape of `protocol.py` renders the events as JSON or as server-sent events. This
module only routes and composes: four modules from the route to the engine and back (app.py, protocol.py,
gateway/admission.py, the engine).

The engine and the gateway are built here, with the app; `lifespan` only starts and stops the engine (in
the background, so `/healthz` answers at once and `/readyz` says 503 until the model is loaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from importlib import resources
from typing import Any, AsyncIterator, Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from lawtune.serving import kb, tool_calls
from lawtune.serving.engines import Engine, EngineError, EngineTimeout, GenerationEvent, GenerationRequest, Prompt
from lawtune.serving.errors import NO_RETRY, ApiError, install_error_handlers, install_request_ids
from lawtune.serving.gateway.admission import Gateway, Ticket
from lawtune.serving.gateway.ratelimit import Grant
from lawtune.serving.gateway.routes import install_gateway
from lawtune.serving.protocol import (ChatCompletionRequest, ChatShape, CompletionRequest, CompletionShape, ModelCard,
                                      ModelList, Shape, respond)
from lawtune.serving.settings import ServeSettings
from lawtune.serving.tool_agent import AgentEngine

log = logging.getLogger("lawtune.serving")
STATIC_DIR = resources.files("lawtune.serving") / "static"


def create_app(settings: ServeSettings, engine: Engine | None = None) -> FastAPI:
    engine = engine or build_engine(settings)
    settings.gateway.check_bind(settings.host)
    gateway = Gateway(settings.gateway, engine, request_timeout_s=settings.request_timeout_s,
                      max_concurrency=settings.max_batch_size if not settings.upstream else 64)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_start_engine(app))
        yield
        loading.cancel()
        with contextlib.suppress(BaseException):
            await loading
        if app.state.ready:
            await app.state.engine.stop()
        if app.state.rag is not None:
            app.state.rag.close()

    app = FastAPI(title="lawtune", version="0.1.0", lifespan=lifespan)
    app.state.settings, app.state.engine = settings, engine
    app.state.ready, app.state.load_error = False, None
    app.state.started = int(time.time())
    app.state.rag = _open_kb(settings)
    app.state.agent = tool_calls.server_agent(settings, app.state.rag)
    install_error_handlers(app)
    gateway.cors_origins = settings.cors_origins  # origins the admin/open-mode Origin check lets through
    install_gateway(app, gateway)
    install_request_ids(app)  # outside the gateway: every answer carries X-Request-Id, a 401 or a crash too
    if settings.cors_origins:  # outermost: a browser's preflight is answered before any key is asked for
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["*"], expose_headers=["X-Request-Id", "Retry-After", "X-RateLimit-Limit",
                                                                "X-RateLimit-Remaining", "X-RateLimit-Reset"])
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app


def build_engine(settings: ServeSettings) -> Engine:
    """The engine the settings ask for (built, not started: `lifespan` starts it)."""
    if settings.upstream:  # the gateway in front of vLLM or another lawtune (RUN, if given, supplies the tokenizer)
        from lawtune.serving.engines.upstream import UpstreamEngine

        key = settings.upstream_key.get_secret_value() if settings.upstream_key else None
        return UpstreamEngine(settings.upstream, api_key=key, run_dir=settings.model,
                              read_timeout_s=settings.request_timeout_s)
    if settings.engine == "llama.cpp":
        from lawtune.serving.engines.llama import LlamaCppEngine

        return LlamaCppEngine(settings.model, name=settings.served_model_name[0] if settings.served_model_name else None,
                              max_batch_size=settings.max_batch_size, adapter=settings.adapter,
                              max_context=settings.max_context, decoding=settings.decoding, quant=settings.gguf_quant,
                              threads=settings.threads)
    from lawtune.serving.engines.local import LocalEngine

    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    return LocalEngine(settings.model, lora_modules=settings.lora_modules,
                       name=settings.served_model_name[0] if settings.served_model_name else None,
                       max_batch_size=settings.max_batch_size, dtype=settings.dtype, serve_base=settings.serve_base,
                       adapter=settings.adapter, max_context=settings.max_context, decoding=settings.decoding)


def _open_kb(settings: ServeSettings) -> Any:
    """The knowledge base of `--kb` (lawtune.serving.kb), opened once: a bad path fails before serving."""
    if not settings.kb:
        return None
    from lawtune.kb.rag import Rag

    return Rag.open(settings.kb, k=settings.kb_k, max_chars=settings.kb_chars, cite_constraint=settings.kb_cite_constraint)


async def _start_engine(app: FastAPI) -> None:
    try:
        await app.state.engine.start()
        app.state.ready = True
        dtype = getattr(app.state.engine, "dtype", None)  # a local engine's resolved weights dtype
        log.info("ready: serving %s%s", ", ".join(app.state.engine.model_ids), f" in {dtype}" if dtype else "")
    except Exception as error:  # shown by /readyz; the process stays up so the operator can see why
        app.state.load_error = f"{type(error).__name__}: {error}"
        log.exception("the engine failed to start")


def ready_engine(request: Request) -> Engine:
    """The engine, or 503 while it is loading (or failed to load)."""
    if not getattr(request.app.state, "ready", False):
        reason = request.app.state.load_error or "the model is still loading"
        raise ApiError(503, f"service not ready: {reason}", "service_unavailable", code="not_ready",
                       headers={"Retry-After": "5"})
    return request.app.state.engine


def model_names(app: FastAPI) -> dict[str, str]:
    """Every name a request may use → the engine's model id: the ids, `--served-model-name` aliases of the
    main model, and `base` for the base model."""
    settings, engine = app.state.settings, app.state.engine
    names = {model: model for model in engine.model_ids}
    for alias in settings.served_model_name[1:]:
        names.setdefault(alias, engine.model_ids[0])
    bases = [model for model in engine.model_ids if not engine.model_info(model).get("parent")]
    if bases:
        names.setdefault("base", bases[-1])
    return names


def resolve_model(request: Request, engine: Engine, requested: str | None) -> str:
    if requested is None:
        return engine.model_ids[0]
    names = model_names(request.app)
    if requested not in names:
        raise ApiError(404, f"model {requested!r} does not exist; served models: {', '.join(names)}",
                       "not_found_error", param="model", code="model_not_found")
    return names[requested]


# The routes: module-level functions on one router, so each can be read (and followed) on its own.
router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    engine = state.engine
    body: dict[str, Any] = {"ready": bool(state.ready), "models": list(engine.model_ids) if state.ready else [],
                            "active": engine.active_batch_size if state.ready else 0,
                            "queued": engine.queue_depth if state.ready else 0}
    if not state.ready:
        body["reason"] = state.load_error or "the model is still loading"
    # the switch and the breaker (200 even when paused: the replica stays reachable to show the notice)
    gateway = state.gateway.status()
    body.update(status=gateway["status"], paused=gateway["paused"], notice=gateway["notice"],
                breaker=gateway["breaker"]["state"])
    # --degrade-to-kb: while paused/degraded, questions still get the articles (the chat page keeps its input)
    body["kb_fallback"] = bool(state.settings.degrade_to_kb)
    return JSONResponse(body, status_code=200 if state.ready else 503)


def _card(request: Request, name: str, model: str) -> ModelCard:
    info = request.app.state.engine.model_info(model)
    root = info.get("root") if name == model else model  # an alias's root is the model it names
    if root and ("/" in root or "\\" in root):  # a weights folder: its name only, never where it lives
        root = root.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return ModelCard(id=name, created=request.app.state.started, root=root, parent=info.get("parent"),
                     max_model_len=info.get("max_model_len"))


@router.get("/v1/models")
async def models(request: Request) -> ModelList:
    ready_engine(request)
    return ModelList(data=[_card(request, name, model) for name, model in model_names(request.app).items()])


@router.get("/v1/models/{model_id:path}")
async def model(model_id: str, request: Request) -> ModelCard:
    engine = ready_engine(request)
    return _card(request, model_id, resolve_model(request, engine, model_id))


@router.get("/", include_in_schema=False)
async def chat_page() -> FileResponse:
    return FileResponse(str(STATIC_DIR / "index.html"))


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    engine = ready_engine(request)
    model = resolve_model(request, engine, body.model)
    messages = body.message_dicts()
    plan = tool_calls.plan_tools(body, request.app.state.agent, upstream=bool(request.app.state.settings.upstream))
    rag = request.app.state.rag

    async def fallback(refusal: ApiError) -> Any:  # 服务降级 with --degrade-to-kb: the articles, not a 503
        # the same limits as a model answer: the key pays one request before anything is retrieved
        await request.app.state.gateway.charge(request, 0, check_switch=False)
        request.state.lawtune_reason = "kb_fallback"
        return await kb.fallback_response(rag, messages, model, refusal.message, bool(body.stream), {})

    degrade = fallback if request.app.state.settings.degrade_to_kb else None
    grant = await _charge_first(request, engine, model, body, degrade)
    if not isinstance(grant, Grant):
        return grant  # the KB fallback's answer
    if rag is not None:  # the articles, as many as fit the context with the answer
        augmented, prompt = await kb.augment_to_fit(rag, engine, model, messages, plan.tools,
                                                    wanted=body.requested_max_tokens() or 1)
    else:
        augmented, prompt = None, await asyncio.to_thread(engine.prompt, model, messages=messages, tools=plan.tools)
    generation = _to_generation(body, prompt, engine, model, request)
    plan.apply(generation)
    if augmented is not None and augmented.hits and _decodes_freely(generation, request.app.state.settings):
        generation.cite = rag.constraint([augmented.hits])  # article numbers only from the retrieved articles
    extend = (kb.extension(rag, augmented, cite_constraint=generation.cite is not None)
              if augmented is not None else None)
    if plan.agent is not None:  # --tools builtin: the agent loop runs as the engine of this request
        engine = AgentEngine(engine, plan.agent)
    shape = (tool_calls.ToolChatShape(generation, extend, plan) if plan.reads_calls and plan.agent is None
             else ChatShape(generation, extend))
    return await _serve(request, engine, generation, shape, body, degrade, grant)


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Any:
    engine = ready_engine(request)
    model = resolve_model(request, engine, body.model)
    text, ids = body.prompt_text(), body.prompt_ids()
    if body.echo and text is None:
        raise ApiError(400, "echo needs a text prompt (the prompt was token ids)", param="echo",
                       code="unsupported_parameter")
    grant = await _charge_first(request, engine, model, body)
    prompt = await asyncio.to_thread(engine.prompt, model, text=text, ids=ids)
    generation = _to_generation(body, prompt, engine, model, request)
    shape = CompletionShape(generation, echo=text if body.echo else None)
    return await _serve(request, engine, generation, shape, body, None, grant)


async def _charge_first(request: Request, engine: Engine, model: str, body: ChatCompletionRequest | CompletionRequest,
                        degrade: Callable[[ApiError], Any] | None = None) -> Any:
    """Admission's first step, before retrieval and tokenizing (whose cost grows with the body): the switch,
    the breaker and the key's limits, charged the request's estimate (`body.token_estimate`; `_serve` corrects
    it to the exact count). Returns the Grant, or the KB fallback's answer when the switch or the breaker
    refuses and --degrade-to-kb is on."""
    estimate = body.token_estimate(engine.context_length(model), request.app.state.settings.default_max_tokens)
    try:
        return await request.app.state.gateway.charge(request, estimate)
    except ApiError as refusal:
        if degrade is None or refusal.code not in ("service_paused", "service_degraded"):
            raise
        return await degrade(refusal)


def _decodes_freely(generation: GenerationRequest, settings: ServeSettings) -> bool:
    """A local engine's answer under no grammar of the request's (tool_choice, response_format, the lazy call
    grammar): where serve --kb's citation constraint applies. An upstream engine decodes on its own."""
    return (settings.upstream is None and generation.grammar is None and generation.json_schema is None
            and not generation.tool_rules)


def _to_generation(body: ChatCompletionRequest | CompletionRequest, prompt: Prompt, engine: Engine, model: str,
                   request: Request) -> GenerationRequest:
    return body.to_generation(prompt, model=model, context_length=engine.context_length(model),
                              default_max_tokens=request.app.state.settings.default_max_tokens,
                              request_id=request.state.request_id)


async def _serve(request: Request, engine: Engine, generation: GenerationRequest, shape: Shape,
                 body: ChatCompletionRequest | CompletionRequest,
                 degrade: Callable[[ApiError], Any] | None, grant: Grant | None = None) -> Any:
    """Admission (the charge corrected to the exact count, a queue slot, the deadline), generation and the
    response (JSON, or SSE with keep-alives while the request waits)."""
    gateway: Gateway = request.app.state.gateway
    log.info("request %s: model=%s prompt_tokens=%d max_tokens=%d n=%d stream=%s user=%s", generation.request_id,
             generation.model, generation.prompt.tokens, generation.max_tokens, generation.n, generation.stream,
             body.user or "-")
    try:
        ticket = await gateway.admit(request, generation.prompt.tokens, generation.max_tokens * generation.n,
                                     wait=not generation.stream, grant=grant)
    except ApiError as refusal:
        if degrade is None or refusal.code not in ("service_paused", "service_degraded"):
            raise
        return await degrade(refusal)
    generation.deadline = ticket.deadline
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await respond(shape, generate_events(engine, generation, ticket), ticket, include_usage,
                         keepalive_s=request.app.state.settings.sse_keepalive_s, headers=ticket.rate_limit_headers())


async def generate_events(engine: Engine, generation: GenerationRequest,
                          ticket: Ticket | None = None) -> AsyncIterator[GenerationEvent]:
    """The engine's events, with engine failures as ApiError (504 timeout, 503 engine_error).

    Closing this iterator (the client went away) closes the engine's, which frees the slot."""
    source = engine.generate(generation)
    if ticket is not None:  # TTFT/token metrics, breaker verdicts, slot release
        source = ticket.guard(source, choices=generation.n)
    async with contextlib.aclosing(source) as events:
        try:
            async for event in events:
                yield event
        except EngineTimeout as error:  # retrying cannot help: the same request meets the same deadline
            raise ApiError(504, str(error), "timeout_error", code="timeout", headers=NO_RETRY) from error
        except EngineError as error:
            raise ApiError(503, str(error), "service_unavailable", code="engine_error") from error
