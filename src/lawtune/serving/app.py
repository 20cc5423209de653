"""The FastAPI app: OpenAI-compatible chat completions, models, health, readiness and the chat page.

    lawtune serve runs/demo                      # the CLI builds ServeSettings and runs this app in uvicorn
    app = create_app(ServeSettings(model="runs/demo"))             # or in Python
    app = create_app(settings, engine=my_engine)                  # any `Engine` (e.g. the gateway's upstream)

The engine is started in `lifespan` as a background task, so `/healthz` answers at once and `/readyz`
says 503 until the model is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from importlib import resources
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from lawtune.serving import kb
from lawtune.serving.engine import (Engine, EngineError, EngineTimeout, Finished, GenerationEvent,
                                    GenerationRequest, LocalEngine, TextDelta)
from lawtune.serving.errors import ApiError, install_error_handlers
from lawtune.serving.gateway.admission import Gateway, Ticket
from lawtune.serving.gateway.routes import install_gateway
from lawtune.serving.protocol import (ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice,
                                      ChunkChoice, Delta, ModelCard, ModelList, ResponseMessage, UsageInfo)
from lawtune.serving.settings import ServeSettings

log = logging.getLogger("lawtune.serving")
STATIC_DIR = resources.files("lawtune.serving") / "static"


def create_app(settings: ServeSettings, engine: Engine | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = engine or _default_engine(settings)
        app.state.gateway.engine = app.state.engine
        app.state.ready, app.state.load_error = False, None
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
    app.state.settings = settings
    app.state.started = int(time.time())
    app.state.rag = _open_kb(settings)
    install_error_handlers(app)
    settings.gateway.check_bind(settings.host)
    install_gateway(app, Gateway(settings.gateway, max_concurrency=settings.max_batch_size if not settings.upstream
                                 else 64, request_timeout_s=settings.request_timeout_s))
    _add_routes(app)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app


def _default_engine(settings: ServeSettings) -> Engine:
    if settings.upstream:  # the gateway in front of vLLM or another lawtune (RUN, if given, supplies the tokenizer)
        from lawtune.serving.gateway.upstream import UpstreamEngine

        key = settings.upstream_key.get_secret_value() if settings.upstream_key else None
        return UpstreamEngine(settings.upstream, api_key=key, run_dir=settings.model,
                              default_timeout_s=settings.request_timeout_s)
    return LocalEngine(settings.model, max_batch_size=settings.max_batch_size, dtype=settings.dtype,
                       serve_base=settings.serve_base, adapter=settings.adapter, timeout_s=settings.request_timeout_s,
                       max_context=settings.max_context, decoding=settings.decoding)


def _open_kb(settings: ServeSettings) -> Any:
    """The knowledge base of `--kb` (lawtune.serving.kb), opened once: a bad path fails before serving."""
    if not settings.kb:
        return None
    from lawtune.kb.rag import Rag

    return Rag.open(settings.kb, k=settings.kb_k, max_chars=settings.kb_chars)


async def _start_engine(app: FastAPI) -> None:
    try:
        await app.state.engine.start()
        app.state.ready = True
        log.info("ready: serving %s", ", ".join(app.state.engine.model_ids))
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


def _add_routes(app: FastAPI) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
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

    @app.get("/v1/models")
    async def models(request: Request) -> ModelList:
        engine = ready_engine(request)
        return ModelList(data=[ModelCard(id=name, created=request.app.state.started) for name in engine.model_ids])

    @app.get("/", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"))

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
        engine = ready_engine(request)
        rag = request.app.state.rag
        augmented = await kb.augment(rag, [m.as_dict() for m in body.messages]) if rag is not None else None
        generation = build_generation(body, engine, request.app.state.settings,
                                      messages=augmented.messages if augmented else None)
        extend = kb.extension(rag, augmented) if augmented is not None else None
        # admission (gateway) hooks in here
        prompt_tokens = engine.count_prompt_tokens(generation.messages, generation.model)
        try:
            ticket = await request.app.state.gateway.admit(request, prompt_tokens, generation.max_tokens)
        except ApiError as refusal:  # 服务降级 with --degrade-to-kb: the articles instead of a bare 503
            if not (request.app.state.settings.degrade_to_kb and refusal.code in ("service_paused", "service_degraded")):
                raise
            request.state.lawtune_reason = "kb_fallback"
            return await kb.fallback_response(rag, [m.as_dict() for m in body.messages], generation.model,
                                              refusal.message, body.stream, {})
        generation.timeout_s = ticket.remaining_s()
        events = generate_events(engine, generation, ticket)
        limits = ticket.rate_limit_headers()
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            first = await _first_event(events)  # errors before the first token still get their HTTP status
            return StreamingResponse(_sse(generation, first, events, include_usage, extend),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **limits})
        completion = (await _complete(generation, events, extend)).model_dump()
        if completion.get("lawtune") is None:
            completion.pop("lawtune", None)  # without --kb the response is exactly OpenAI's shape
        return JSONResponse(completion, headers=limits)


def build_generation(body: ChatCompletionRequest, engine: Engine, settings: ServeSettings,
                     messages: list[dict[str, str]] | None = None) -> GenerationRequest:
    """Resolve the model, count the prompt, check it fits, and fix max_tokens (`messages`: the RAG prompt)."""
    model = body.model or engine.model_ids[0]
    if model not in engine.model_ids:
        raise ApiError(404, f"model {model!r} does not exist; served models: {', '.join(engine.model_ids)}",
                       param="model", code="model_not_found")
    messages = messages if messages is not None else [message.as_dict() for message in body.messages]
    prompt_tokens = engine.count_prompt_tokens(messages, model)
    requested = body.requested_max_tokens()
    limit = engine.context_length(model)
    if limit is not None:
        room = limit - prompt_tokens
        wanted = requested if requested is not None else 1
        if wanted > room:
            raise ApiError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the messages, {wanted} in the completion). "
                f"Please reduce the length of the messages or completion by {prompt_tokens + wanted - limit} tokens.",
                param="messages", code="context_length_exceeded")
        max_tokens = requested if requested is not None else min(settings.default_max_tokens, room)
    else:
        max_tokens = requested if requested is not None else settings.default_max_tokens
    return GenerationRequest(messages=messages, model=model, max_tokens=max_tokens, temperature=body.temperature,
                             top_p=body.top_p, seed=body.seed, stop=body.stop_list(),
                             timeout_s=settings.request_timeout_s, request_id=f"chatcmpl-{uuid.uuid4().hex}",
                             repetition_penalty=body.repetition_penalty, frequency_penalty=body.frequency_penalty,
                             presence_penalty=body.presence_penalty, stream=body.stream)


async def generate_events(engine: Engine, generation: GenerationRequest,
                          ticket: Ticket | None = None) -> AsyncIterator[GenerationEvent]:
    """The one generation helper both response paths use: engine events, with engine failures as ApiError.

    Closing this iterator (the client went away) closes the engine's, which frees the slot."""
    source = engine.generate(generation)
    if ticket is not None:  # deadline, TTFT/token metrics, breaker verdicts, slot release
        source = ticket.guard(source)
    async with contextlib.aclosing(source) as events:
        try:
            async for event in events:
                yield event
        except EngineTimeout as error:
            raise ApiError(504, str(error), "timeout_error", code="timeout") from error
        except EngineError as error:
            raise ApiError(503, str(error), "service_unavailable", code="engine_error") from error


async def _first_event(events: AsyncIterator[GenerationEvent]) -> GenerationEvent:
    try:
        return await anext(events)
    except BaseException:
        await events.aclose()
        raise


async def _complete(generation: GenerationRequest, events: AsyncIterator[GenerationEvent],
                    extend: Callable[[str], dict] | None = None) -> ChatCompletion:
    parts: list[str] = []
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, Finished):
                usage = _usage(event)
                finish, stop_reason = api_finish(event)
                text = "".join(parts)
                return ChatCompletion(id=generation.request_id, created=int(time.time()), model=generation.model,
                                      choices=[Choice(message=ResponseMessage(content=text),
                                                      finish_reason=finish, stop_reason=stop_reason)], usage=usage,
                                      lawtune=extend(text) if extend else None)
    raise ApiError(503, "the engine ended the answer without finishing it", "service_unavailable", code="engine_error")


async def _sse(generation: GenerationRequest, first: GenerationEvent, events: AsyncIterator[GenerationEvent],
               include_usage: bool, extend: Callable[[str], dict] | None = None) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`; with --kb the chunk carrying
    finish_reason also carries the `lawtune` field (references, citation verdicts of the whole answer)."""
    created = int(time.time())
    parts: list[str] = []

    def chunk(delta: Delta, finish: str | None = None, usage: UsageInfo | None = None, empty: bool = False,
              stop_reason: str | None = None, extra: dict | None = None) -> str:
        choices = [] if empty else [ChunkChoice(delta=delta, finish_reason=finish, stop_reason=stop_reason)]
        body = ChatCompletionChunk(id=generation.request_id, created=created, model=generation.model,
                                   choices=choices, usage=usage, lawtune=extra)
        return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

    async def all_events() -> AsyncIterator[GenerationEvent]:
        yield first
        async for event in events:
            yield event

    yield chunk(Delta(role="assistant", content=""))
    async with contextlib.aclosing(events):
        try:
            async for event in all_events():
                if isinstance(event, TextDelta) and event.text:
                    parts.append(event.text)
                    yield chunk(Delta(content=event.text))
                elif isinstance(event, Finished):
                    finish, stop_reason = api_finish(event)
                    extra = extend("".join(parts)) if extend else None
                    yield chunk(Delta(), finish=finish, stop_reason=stop_reason, extra=extra)
                    if include_usage:
                        yield chunk(Delta(), usage=_usage(event), empty=True)
                    yield "data: [DONE]\n\n"
                    return
        except ApiError as error:  # headers are sent: report in-band, as OpenAI does
            yield f"data: {json.dumps(error.body(), ensure_ascii=False)}\n\n"


def api_finish(event: Finished) -> tuple[str, str | None]:
    """The engine's finish reason as the API says it: OpenAI's finish_reason plus vLLM's stop_reason.

    A repetition stop is finish_reason "stop" (clients only know OpenAI's values) with stop_reason
    "repetition", so a client can tell it from an answer the model ended on its own."""
    if event.finish_reason == "repetition":
        return "stop", "repetition"
    return event.finish_reason, None


def _usage(event: Finished) -> UsageInfo:
    return UsageInfo(prompt_tokens=event.usage.prompt_tokens, completion_tokens=event.usage.completion_tokens,
                     total_tokens=event.usage.total_tokens)
