"""The FastAPI app: OpenAI-compatible chat completions, completions, models, health, readiness, chat page.

    lawtune serve runs/demo                      # the CLI builds ServeSettings and runs this app in uvicorn
    app = create_app(ServeSettings(model="runs/demo"))             # or in Python
    app = create_app(settings, engine=my_engine)                  # any `Engine` (e.g. an UpstreamEngine)

One request, top to bottom: the gateway charges it first (`_charge_first`: switch, breaker, the key's
limits charged an estimate; keys were checked by its middleware) — before any work whose cost grows with the
body — then retrieval (--kb), the engine tokenizes the prompt once (`engine.prompt`, off the event loop),
the app checks it fits the context and fixes max_tokens (`build_generation`), the gateway corrects the charge
to the exact count and gives it a queue slot and its deadline (`_serve`), the engine generates, and a shape
(`_ChatShape` / `_CompletionShape`) renders the events as JSON or as server-sent events.

The engine and the gateway are built here, with the app; `lifespan` only starts and stops the engine (in
the background, so `/healthz` answers at once and `/readyz` says 503 until the model is loaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from importlib import resources
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sse_starlette import EventSourceResponse

from lawtune.serving import kb, tool_calls
from lawtune.serving.engines import (Engine, EngineError, EngineTimeout, Finished, GenerationEvent, GenerationRequest,
                                     Prompt, TextDelta, TokenLogprob)
from lawtune.serving.errors import ApiError, install_error_handlers, install_request_ids
from lawtune.serving.gateway.admission import NO_RETRY, Gateway, Ticket
from lawtune.serving.gateway.ratelimit import Grant
from lawtune.serving.gateway.routes import install_gateway
from lawtune.serving.protocol import (ChatCompletionRequest, ChoiceLogprobs, CompletionLogprobs, CompletionRequest,
                                      ModelCard, ModelList, TokenLogprobOut, TopLogprob, UsageInfo)
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
    _add_routes(app)
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
                              max_context=settings.max_context, decoding=settings.decoding, quant=settings.gguf_quant)
    from lawtune.serving.engines.local import LocalEngine

    return LocalEngine(settings.model, lora_modules=settings.lora_modules,
                       name=settings.served_model_name[0] if settings.served_model_name else None,
                       max_batch_size=settings.max_batch_size, dtype=settings.dtype, serve_base=settings.serve_base,
                       adapter=settings.adapter, max_context=settings.max_context, decoding=settings.decoding)


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

    def card(request: Request, name: str, model: str) -> ModelCard:
        info = request.app.state.engine.model_info(model)
        root = info.get("root") if name == model else model  # an alias's root is the model it names
        if root and ("/" in root or "\\" in root):  # a weights folder: its name only, never where it lives
            root = root.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        return ModelCard(id=name, created=request.app.state.started, root=root, parent=info.get("parent"),
                         max_model_len=info.get("max_model_len"))

    @app.get("/v1/models")
    async def models(request: Request) -> ModelList:
        ready_engine(request)
        return ModelList(data=[card(request, name, model) for name, model in model_names(request.app).items()])

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> ModelCard:
        engine = ready_engine(request)
        return card(request, model_id, resolve_model(request, engine, model_id))

    @app.get("/", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"))

    @app.post("/v1/chat/completions", response_model=None)
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
        grant = await _charge_first(request, engine, model, body, _text_chars(messages), degrade)
        if not isinstance(grant, Grant):
            return grant  # the KB fallback's answer
        augmented = await kb.augment(rag, messages) if rag is not None else None
        prompt = await asyncio.to_thread(engine.prompt, model, messages=augmented.messages if augmented else messages,
                                         tools=plan.tools)
        generation = build_generation(body, engine, request, model, prompt, "messages")
        generation.logprobs = body.logprob_count()
        plan.apply(generation)
        extend = kb.extension(rag, augmented) if augmented is not None else None
        if plan.agent is not None:  # --tools builtin: the agent loop runs as the engine of this request
            return await _serve(request, AgentEngine(engine, plan.agent), generation, _ChatShape(generation, extend),
                                body, degrade, grant)
        shape = _ToolChatShape(generation, extend, plan) if plan.reads_calls else _ChatShape(generation, extend)
        return await _serve(request, engine, generation, shape, body, degrade, grant)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        engine = ready_engine(request)
        model = resolve_model(request, engine, body.model)
        text, ids = body.prompt_text(), body.prompt_ids()
        if body.echo and text is None:
            raise ApiError(400, "echo needs a text prompt (the prompt was token ids)", param="echo",
                           code="unsupported_parameter")
        grant = await _charge_first(request, engine, model, body, len(text) + 2 if text is not None else len(ids))
        prompt = await asyncio.to_thread(engine.prompt, model, text=text, ids=ids)
        generation = build_generation(body, engine, request, model, prompt, "prompt")
        generation.logprobs = body.logprobs
        shape = _CompletionShape(generation, echo=text if body.echo else None)
        return await _serve(request, engine, generation, shape, body, None, grant)


def _text_chars(messages: list[dict[str, Any]]) -> int:
    """Characters a conversation puts in the prompt (content and tool calls), for the up-front estimate."""
    return sum(len(json.dumps(message, ensure_ascii=False)) for message in messages)


async def _charge_first(request: Request, engine: Engine, model: str, body: ChatCompletionRequest | CompletionRequest,
                        prompt_chars: int, degrade: Callable[[ApiError], Any] | None = None) -> Any:
    """Admission's first step, before retrieval and tokenizing (whose cost grows with the body): the switch,
    the breaker and the key's limits, charged an estimate of the request's tokens (about one per character,
    at most the context; `_serve` corrects it to the exact count). Returns the Grant, or the KB fallback's
    answer when the switch or the breaker refuses and --degrade-to-kb is on."""
    settings: ServeSettings = request.app.state.settings
    limit = engine.context_length(model)
    prompt = min(prompt_chars, limit) if limit is not None else prompt_chars
    wanted = body.requested_max_tokens() or settings.default_max_tokens
    try:
        return await request.app.state.gateway.charge(request, prompt + wanted * (body.n or 1))
    except ApiError as refusal:
        if degrade is None or refusal.code not in ("service_paused", "service_degraded"):
            raise
        return await degrade(refusal)


def build_generation(body: ChatCompletionRequest | CompletionRequest, engine: Engine, request: Request, model: str,
                     prompt: Prompt, prompt_param: str) -> GenerationRequest:
    """Check the prompt fits the context, fix max_tokens, and turn the request's fields into the engine's."""
    settings: ServeSettings = request.app.state.settings
    if prompt.tokens == 0:  # nothing to prefill: the engine would fail on it (and count it against the breaker)
        raise ApiError(400, f"the {prompt_param} is empty once tokenized; send some text", param=prompt_param,
                       code="invalid_value")
    requested = body.requested_max_tokens()
    limit = engine.context_length(model)
    if limit is not None:
        room = limit - prompt.tokens
        wanted = requested if requested is not None else 1
        if wanted > room:
            raise ApiError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt.tokens + wanted} tokens ({prompt.tokens} in the {prompt_param}, {wanted} in the completion). "
                f"Please reduce the length of the {prompt_param} or completion by {prompt.tokens + wanted - limit} tokens.",
                param=prompt_param, code="context_length_exceeded", headers=NO_RETRY)
        max_tokens = requested if requested is not None else min(settings.default_max_tokens, room)
    else:
        max_tokens = requested if requested is not None else settings.default_max_tokens
    passthrough: dict[str, Any] = {}
    if body.response_format is not None:  # an upstream gets it as the client sent it
        passthrough["response_format"] = body.response_format.model_dump(by_alias=True, exclude_none=True)
    if body.user:
        passthrough["user"] = body.user
    return GenerationRequest(
        prompt=prompt, model=model, max_tokens=max_tokens, n=body.n or 1,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p, top_k=max(body.top_k or 0, 0), min_p=body.min_p or 0.0,
        seed=body.seed, logit_bias=body.bias(), stop=body.stop_list(),
        json_schema=body.response_format.target_schema() if body.response_format else None,
        request_id=request.state.request_id, repetition_penalty=body.repetition_penalty,
        frequency_penalty=body.frequency_penalty, presence_penalty=body.presence_penalty, stream=bool(body.stream),
        passthrough=passthrough)


async def _serve(request: Request, engine: Engine, generation: GenerationRequest, shape: Any,
                 body: ChatCompletionRequest | CompletionRequest,
                 degrade: Callable[[ApiError], Any] | None, grant: Grant | None = None) -> Any:
    """Admission, generation and the response (JSON, or SSE with keep-alives while the request waits)."""
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
    events = generate_events(engine, generation, ticket)
    limits = ticket.rate_limit_headers()
    if not generation.stream:
        return JSONResponse(await _collect(shape, events), headers=limits)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    first = None
    if ticket.has_slot:  # errors before the first token still get their HTTP status
        first = await _first_event(events)
    keepalive = request.app.state.settings.sse_keepalive_s
    return EventSourceResponse(_sse(shape, ticket, first, events, include_usage), ping=keepalive, sep="\n",
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **limits})


async def generate_events(engine: Engine, generation: GenerationRequest,
                          ticket: Ticket | None = None) -> AsyncIterator[GenerationEvent]:
    """The one generation helper both response paths use: engine events, with engine failures as ApiError.

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


async def _first_event(events: AsyncIterator[GenerationEvent]) -> GenerationEvent:
    try:
        return await anext(events)
    except BaseException:
        await events.aclose()
        raise


async def _collect(shape: Any, events: AsyncIterator[GenerationEvent]) -> dict[str, Any]:
    async with contextlib.aclosing(events):
        async for event in events:
            shape.add(event)
    if not shape.done():
        raise ApiError(503, "the engine ended the answer without finishing it", "service_unavailable",
                       code="engine_error")
    return shape.whole()


async def _sse(shape: Any, ticket: Ticket, first: GenerationEvent | None, events: AsyncIterator[GenerationEvent],
               include_usage: bool) -> AsyncIterator[dict[str, str]]:
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]` — also after an error, which
    arrives as a `data: {"error": …}` event once the response has started (sse-starlette frames the events
    and sends a `: ping` comment every --sse-keepalive seconds, so a proxy never sees an idle stream)."""
    def data(payload: dict[str, Any]) -> dict[str, str]:
        return {"data": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))}

    async with contextlib.aclosing(events):
        try:
            if not ticket.has_slot:
                await ticket.wait_for_slot()  # keep-alive pings flow meanwhile
            for chunk in shape.opening():
                yield data(chunk)
            pending = [first] if first is not None else []
            async for event in _chain(pending, events):
                for chunk in shape.chunks(event):
                    yield data(chunk)
            if include_usage and shape.done():
                yield data(shape.usage_chunk())
        except ApiError as error:  # headers are sent: report in-band, as OpenAI does
            yield data(error.body())
        except Exception as error:  # a bug: still an envelope and a proper end of stream
            log.exception("request %s failed mid-stream", shape.generation.request_id)
            yield data(ApiError(500, f"internal error ({type(error).__name__}); request id "
                                f"{shape.generation.request_id}", "server_error", code="internal_error").body())
        yield {"data": "[DONE]"}


async def _chain(first: list[GenerationEvent], rest: AsyncIterator[GenerationEvent]) -> AsyncIterator[GenerationEvent]:
    for event in first:
        yield event
    async for event in rest:
        yield event


def api_finish(event: Finished) -> tuple[str, str | None]:
    """The engine's finish reason as the API says it: OpenAI's finish_reason plus vLLM's stop_reason.

    A repetition stop is finish_reason "stop" (clients only know OpenAI's values) with stop_reason
    "repetition", so a client can tell it from an answer the model ended on its own."""
    if event.finish_reason == "repetition":
        return "stop", "repetition"
    return event.finish_reason, None


# ----------------------------------------------------------------------------------------------------
# Response shapes: the same events rendered as a chat completion or a (text) completion
# ----------------------------------------------------------------------------------------------------


class _Shape:
    """Collects the events of n choices; subclasses say how a choice, a chunk and the whole look."""

    object_whole = object_chunk = prefix = ""

    def __init__(self, generation: GenerationRequest):
        self.generation = generation
        self.id = f"{self.prefix}-{generation.request_id}"
        self.created = int(time.time())
        self.texts = [""] * generation.n
        self.logprobs: list[list[TokenLogprob]] = [[] for _ in range(generation.n)]
        self.finished: dict[int, Finished] = {}

    def add(self, event: GenerationEvent) -> None:
        self.logprobs[event.index].extend(event.logprobs or [])
        if isinstance(event, TextDelta):
            self.texts[event.index] += event.text
        else:
            self.finished[event.index] = event

    def done(self) -> bool:
        return len(self.finished) == self.generation.n

    def usage(self) -> UsageInfo:
        prompt = next(iter(self.finished.values())).usage.prompt_tokens if self.finished else 0
        completion = sum(event.usage.completion_tokens for event in self.finished.values())
        return UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def envelope(self, choices: list[dict[str, Any]], whole: bool) -> dict[str, Any]:
        return {"id": self.id, "object": self.object_whole if whole else self.object_chunk, "created": self.created,
                "model": self.generation.model, "choices": choices}

    def usage_chunk(self) -> dict[str, Any]:
        return {**self.envelope([], whole=False), "usage": self.usage().model_dump()}

    def opening(self) -> list[dict[str, Any]]:
        return []


class _ChatShape(_Shape):
    object_whole, object_chunk, prefix = "chat.completion", "chat.completion.chunk", "chatcmpl"

    def __init__(self, generation: GenerationRequest, extend: Callable[[str], dict] | None = None):
        super().__init__(generation)
        self.extend = extend  # --kb: the `lawtune` field of the finished answer

    def _logprobs(self, entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
        if self.generation.logprobs is None:
            return None
        content = [TokenLogprobOut(token=e.token, logprob=e.logprob, bytes=e.bytes,
                                   top_logprobs=[TopLogprob(token=t, logprob=v, bytes=b) for t, v, b in e.top])
                   for e in entries or []]
        return ChoiceLogprobs(content=content).model_dump()

    def opening(self) -> list[dict[str, Any]]:
        return [self.envelope([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                                "logprobs": None}], whole=False) for i in range(self.generation.n)]

    def chunks(self, event: GenerationEvent) -> list[dict[str, Any]]:
        self.add(event)
        if isinstance(event, TextDelta):
            if not event.text and not event.logprobs:
                return []
            return [self.envelope([{"index": event.index, "delta": {"content": event.text}, "finish_reason": None,
                                    "logprobs": self._logprobs(event.logprobs)}], whole=False)]
        finish, stop_reason = api_finish(event)
        chunk = self.envelope([{"index": event.index, "delta": {}, "finish_reason": finish, "stop_reason": stop_reason,
                                "logprobs": self._logprobs(event.logprobs) if event.logprobs else None}], whole=False)
        if self.done() and (field := self.lawtune_field(self.texts[0])):
            chunk["lawtune"] = field
        return [chunk]

    def lawtune_field(self, text: str) -> dict[str, Any] | None:
        """The `lawtune` extension: --kb's references and citations, the agent loop's trace (None: neither)."""
        field = dict(self.extend(text)) if self.extend is not None else {}
        for finished in self.finished.values():
            field.update(finished.lawtune or {})
        return field or None

    def whole(self) -> dict[str, Any]:
        choices = []
        for index in range(self.generation.n):
            finish, stop_reason = api_finish(self.finished[index])
            choices.append({"index": index, "message": {"role": "assistant", "content": self.texts[index],
                                                        "refusal": None},
                            "finish_reason": finish, "stop_reason": stop_reason,
                            "logprobs": self._logprobs(self.logprobs[index])})
        body = {**self.envelope(choices, whole=True), "usage": self.usage().model_dump()}
        if field := self.lawtune_field(self.texts[0]):  # without --kb or tools the response is exactly OpenAI's shape
            body["lawtune"] = field
        return body


class _CompletionShape(_Shape):
    object_whole = object_chunk = "text_completion"
    prefix = "cmpl"

    def __init__(self, generation: GenerationRequest, echo: str | None = None):
        super().__init__(generation)
        self.echo = echo  # the prompt text, put before each answer (echo: true)
        self.offsets = [len(echo or "")] * generation.n

    def _logprobs(self, index: int, entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
        if self.generation.logprobs is None:
            return None
        out = CompletionLogprobs()
        for entry in entries or []:
            out.tokens.append(entry.token)
            out.token_logprobs.append(entry.logprob)
            out.top_logprobs.append({token: value for token, value, _ in entry.top})
            out.text_offset.append(self.offsets[index])
            self.offsets[index] += len(entry.token)
        return out.model_dump()

    def opening(self) -> list[dict[str, Any]]:
        if self.echo is None:
            return []
        return [self.envelope([{"index": i, "text": self.echo, "finish_reason": None, "logprobs": None}], whole=False)
                for i in range(self.generation.n)]

    def chunks(self, event: GenerationEvent) -> list[dict[str, Any]]:
        self.add(event)
        logprobs = self._logprobs(event.index, event.logprobs) if event.logprobs or isinstance(event, TextDelta) else None
        if isinstance(event, TextDelta):
            if not event.text and not event.logprobs:
                return []
            return [self.envelope([{"index": event.index, "text": event.text, "finish_reason": None,
                                    "logprobs": logprobs}], whole=False)]
        finish, stop_reason = api_finish(event)
        return [self.envelope([{"index": event.index, "text": "", "finish_reason": finish, "stop_reason": stop_reason,
                                "logprobs": logprobs}], whole=False)]

    def whole(self) -> dict[str, Any]:
        choices = []
        for index in range(self.generation.n):
            finish, stop_reason = api_finish(self.finished[index])
            choices.append({"index": index, "text": (self.echo or "") + self.texts[index], "finish_reason": finish,
                            "stop_reason": stop_reason, "logprobs": self._logprobs(index, self.logprobs[index])})
        return {**self.envelope(choices, whole=True), "usage": self.usage().model_dump()}


class _ToolChatShape(_ChatShape):
    """A chat completion with `tools`: the model's text read as content and tool calls (`tool_calls.CallStream`:
    `message.tool_calls`, finish_reason "tool_calls", streamed as the SDK assembles them: the call's index, id,
    type and name first, then its arguments), or an upstream's own tool-call deltas relayed. Blocks that do not
    parse are never content: `lawtune.tool_call_errors` reports them."""

    def __init__(self, generation: GenerationRequest, extend: Callable[[str], dict] | None,
                 plan: tool_calls.ToolPlan):
        super().__init__(generation, extend)
        self.plan = plan
        self.streams = [plan.call_stream() for _ in range(generation.n)]
        self.relayed: list[list[dict[str, Any]]] = [[] for _ in range(generation.n)]  # an upstream's calls

    def opening(self) -> list[dict[str, Any]]:
        # content null, as OpenAI opens an answer that may be only calls (the SDK then reports no content)
        return [self.envelope([{"index": i, "delta": {"role": "assistant", "content": None}, "finish_reason": None,
                                "logprobs": None}], whole=False) for i in range(self.generation.n)]

    def add(self, event: GenerationEvent) -> None:
        super().add(event)
        if isinstance(event, TextDelta) and event.tool_calls:  # an upstream's: assembled for the whole response
            tool_calls.merge_call_deltas(self.relayed[event.index], event.tool_calls)

    def _chunk(self, index: int, delta: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
        return self.envelope([{"index": index, "delta": delta, "finish_reason": None, "logprobs": logprobs}],
                             whole=False)

    def _pieces(self, index: int, pieces: list[Any]) -> list[dict[str, Any]]:
        chunks, stream = [], self.streams[index]
        for piece in pieces:
            if isinstance(piece, tool_calls.Content):
                chunks.append(self._chunk(index, {"content": piece.text}))
            elif isinstance(piece, tool_calls.Call):
                call = piece.openai()
                at = stream.calls.index(piece)
                chunks.append(self._chunk(index, {"tool_calls": [{"index": at, "id": call["id"], "type": "function",
                                                                   "function": {"name": call["function"]["name"],
                                                                                "arguments": ""}}]}))
                chunks.append(self._chunk(index, {"tool_calls": [{"index": at, "function": {
                    "arguments": call["function"]["arguments"]}}]}))
        return chunks

    def chunks(self, event: GenerationEvent) -> list[dict[str, Any]]:
        self.add(event)
        index = event.index
        if isinstance(event, TextDelta):
            out = []
            if event.tool_calls:  # an upstream parsed them: relay as sent
                out.append(self._chunk(index, {"tool_calls": event.tool_calls}))
            if self.plan.parses:
                out += self._pieces(index, self.streams[index].push(event.text))
            elif event.text:
                out.append(self._chunk(index, {"content": event.text}))
            if event.logprobs:
                logprobs = self._logprobs(event.logprobs)
                if out:
                    out[0]["choices"][0]["logprobs"] = logprobs
                else:
                    out.append(self._chunk(index, {"content": ""}, logprobs))
            return out
        out = self._pieces(index, self.streams[index].finish()) if self.plan.parses else []
        finish, stop_reason = self._finish(index, event)
        last = self.envelope([{"index": index, "delta": {}, "finish_reason": finish, "stop_reason": stop_reason,
                               "logprobs": self._logprobs(event.logprobs) if event.logprobs else None}], whole=False)
        if self.done() and (field := self.lawtune_field(self.streams[0].content)):
            last["lawtune"] = field
        return out + [last]

    def _finish(self, index: int, event: Finished) -> tuple[str, str | None]:
        if self.streams[index].calls:
            return "tool_calls", None
        return api_finish(event)

    def lawtune_field(self, text: str) -> dict[str, Any] | None:
        field = super().lawtune_field(text) or {}
        errors = [{"index": index, "error": problem} for index, stream in enumerate(self.streams)
                  for problem in stream.problems]
        if errors:
            field["tool_call_errors"] = errors
        return field or None

    def whole(self) -> dict[str, Any]:
        if self.plan.parses:  # the same reading as the streamed answer's
            for index, stream in enumerate(self.streams):
                stream.push(self.texts[index])
                stream.finish()
        body = super().whole()
        for choice in body["choices"]:
            index = choice["index"]
            stream = self.streams[index]
            calls = [call.openai() for call in stream.calls] if self.plan.parses else self.relayed[index]
            content = stream.content if self.plan.parses else self.texts[index]
            choice["message"]["content"] = content if content.strip() or not calls else None
            if calls:
                choice["message"]["tool_calls"] = calls
                choice["finish_reason"], choice["stop_reason"] = self._finish(index, self.finished[index])
        if field := self.lawtune_field(self.streams[0].content if self.plan.parses else self.texts[0]):
            body["lawtune"] = field
        return body
