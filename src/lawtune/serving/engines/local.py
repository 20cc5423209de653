"""Generation engines behind the API: the interface every engine implements, and the local batching engine.

    engine = LocalEngine.from_run("runs/demo", max_batch_size=8)
    await engine.start()
    request = GenerationRequest(messages=[{"role": "user", "content": "离婚需要什么材料？"}],
                                model=engine.model_ids[0], max_tokens=64)
    async for event in engine.generate(request):
        if isinstance(event, TextDelta): print(event.text, end="")
        else: print(event.finish_reason, event.usage)      # Finished: always the last event
                                                             # ("stop", "length" or "repetition")
    await engine.stop()

The local engine decodes with the same policy as eval and infer (`lawtune.modeling.decoding`): repetition
control on the answer's tokens, and the repetition stop (finish reason "repetition"; the API says
finish_reason "stop" with stop_reason "repetition"). `LocalEngine(decoding=...)` sets the defaults; a
request's penalties override them.

The app (`lawtune.serving.app`) only talks to the `Engine` protocol below, so the local engine and the
gateway's `UpstreamEngine` (an OpenAI-compatible URL behind httpx) are interchangeable.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Literal, Protocol, runtime_checkable

from lawtune.modeling.decoding import DecodingPolicy

# ----------------------------------------------------------------------------------------------------
# The interface (the seam between the app, the local engine and the gateway's upstream engine)
# ----------------------------------------------------------------------------------------------------


@dataclass
class GenerationRequest:
    """One chat completion to generate; already validated by the app (limits live in `protocol.py`)."""

    messages: list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": "..."}]
    model: str  # one of engine.model_ids
    max_tokens: int  # new tokens at most; the app has checked prompt + max_tokens fits the context
    temperature: float = 1.0  # 0 → greedy
    top_p: float = 1.0
    seed: int | None = None  # sampling seed (per request); None → nondeterministic
    stop: list[str] = field(default_factory=list)  # stop strings, not included in the output
    timeout_s: float | None = None  # wall-clock budget from submission; None → the engine's default
    request_id: str = ""  # the API's `chatcmpl-…` id, for logs and upstream correlation
    # repetition control for this request; None → the engine's default policy (serve's --repetition-* flags)
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # a streamed answer may show text early (a repetition stop can then not take it back); a non-streamed one
    # holds it until the end, so it is exactly the cut answer eval would give
    stream: bool = True

    def penalties(self) -> dict[str, float]:
        """The penalties this request sets (the rest come from the engine's policy)."""
        return {name: getattr(self, name) for name in ("repetition_penalty", "frequency_penalty", "presence_penalty")
                if getattr(self, name) is not None}


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class TextDelta:
    """New answer text (may be empty only if an engine wants to signal progress; the app skips empty ones)."""

    text: str


@dataclass
class Finished:
    """The last event of every generation. "repetition": the answer looped and was cut (lawtune.modeling.decoding)."""

    finish_reason: Literal["stop", "length", "repetition"]
    usage: Usage


GenerationEvent = TextDelta | Finished


class EngineError(Exception):
    """The engine could not generate (model crashed, upstream unreachable). The app answers 503;
    the gateway's circuit breaker counts these."""


class EngineTimeout(EngineError):
    """The request ran past its `timeout_s`. The app answers 504 (or an error event mid-stream)."""


@runtime_checkable
class Engine(Protocol):
    """What the app needs from an engine.

    - `generate(request)` is an async iterator of `TextDelta`… then exactly one `Finished`. Closing it
      early (the client disconnected: the app calls `aclose()` or the task is cancelled) must free the
      request's slot at the engine's next step. It raises `EngineTimeout` past the deadline,
      `EngineError` when the engine fails, or an `lawtune.serving.errors.ApiError` to pass an upstream's
      4xx through unchanged.
    - `count_prompt_tokens(messages, model)` is exactly what `Finished.usage.prompt_tokens` will say.
    - `context_length(model)` is the most prompt + new tokens the model accepts (None: unknown, the app
      then skips the context check and leaves it to the engine).
    - `active_batch_size` (sequences being generated now) and `queue_depth` (accepted, not yet started)
      are for metrics and admission; reading them must be cheap and thread-safe.
    """

    model_ids: list[str]  # served model names: the first is the default (the run's adapter model)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def count_prompt_tokens(self, messages: list[dict[str, str]], model: str) -> int: ...

    def context_length(self, model: str) -> int | None: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]: ...

    @property
    def active_batch_size(self) -> int: ...

    @property
    def queue_depth(self) -> int: ...


# ----------------------------------------------------------------------------------------------------
# The local engine: transformers (+ a merged LoRA adapter) with continuous batching in one worker thread
# ----------------------------------------------------------------------------------------------------

log = logging.getLogger("lawtune.serving")


@dataclass(eq=False)
class _Ticket:
    """A request inside the local engine: the worker thread posts events to its asyncio queue."""

    request: GenerationRequest
    prompt_ids: list[int]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    deadline: float
    cancelled: bool = False  # set from the event loop when the client goes away; read by the worker
    seq: Any = None  # batch.Sequence once admitted
    stream: Any = None  # decoding.TextStream once admitted

    def post(self, event: GenerationEvent | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


@dataclass
class _Served:
    """One served model: a loaded model + its running batch."""

    loaded: Any  # lawtune.modeling.loading.LoadedModel
    batch: Any  # batch.DecodeBatch
    tickets: dict[int, _Ticket] = field(default_factory=dict)  # id(seq) → ticket


class LocalEngine:
    """Serves a run folder (the merged adapter model, and optionally its base) with continuous batching.

    All model work happens in one worker thread, so the event loop never waits on torch. Each loop turn the
    worker admits waiting requests into free slots (prefilling each prompt alone), then advances every
    running sequence by one token in a single batched forward pass per model. A request leaves the batch
    when it ends, times out or its client goes away — checked before every step.
    """

    def __init__(self, spec: str | Path, *, max_batch_size: int = 8, dtype: str = "float32",
                 serve_base: bool = True, adapter: str = "best", timeout_s: float = 300.0,
                 max_context: int | None = None, decoding: DecodingPolicy | None = None):
        self.spec, self.dtype, self.adapter = spec, dtype, adapter
        self.decoding = decoding or DecodingPolicy()
        self.max_batch_size, self.serve_base, self.timeout_s = max_batch_size, serve_base, timeout_s
        self.max_context = max_context
        self.model_ids: list[str] = []
        self._served: dict[str, _Served] = {}
        self._pending: collections.deque[_Ticket] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # how requests ended, for metrics and tests (written by the worker thread only)
        self.counts = {"finished": 0, "cancelled": 0, "timed_out": 0, "failed": 0}
        self.peak_batch_size = 0  # the most sequences ever generated together (reset it to watch a window)

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._run, name="lawtune-engine", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        from lawtune.modeling.loading import load_model
        from lawtune.modeling.runs import is_run_dir
        from lawtune.serving.batch import DecodeBatch, transpose_output_head

        loaded = [load_model(self.spec, adapter=self.adapter, dtype=self.dtype, merge=True)]
        if self.serve_base and is_run_dir(Path(self.spec)):
            # a second copy of the base: merging the adapter changed the first one's weights in place
            loaded.append(load_model(self.spec, base_only=True, dtype=self.dtype))
        for item in loaded:
            transpose_output_head(item.model)
            self._served[item.name] = _Served(item, DecodeBatch(item.model))
        self.model_ids = [item.name for item in loaded]

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
        while self._pending:
            self._pending.popleft().post(EngineError("the server is shutting down"))

    # -- reads for the app and metrics ----------------------------------------------------------------
    def count_prompt_tokens(self, messages: list[dict[str, str]], model: str) -> int:
        return len(self._served[model].loaded.chat.encode_prompt(messages))

    def context_length(self, model: str) -> int | None:
        config = self._served[model].loaded.model.config
        limit = getattr(config, "max_position_embeddings", None)
        if self.max_context is not None:
            limit = min(limit or self.max_context, self.max_context)
        return limit

    @property
    def active_batch_size(self) -> int:
        return sum(len(served.batch.sequences) for served in self._served.values())

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    # -- the async side -------------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        served = self._served.get(request.model)
        if served is None:
            raise EngineError(f"model {request.model!r} is not loaded")
        timeout = request.timeout_s if request.timeout_s is not None else self.timeout_s
        ticket = _Ticket(request, served.loaded.chat.encode_prompt(request.messages), asyncio.get_running_loop(),
                         asyncio.Queue(), time.monotonic() + timeout)
        self._pending.append(ticket)
        self._wake.set()
        try:
            while True:
                event = await ticket.queue.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            ticket.cancelled = True  # a no-op when finished; frees the slot at the next step otherwise
            self._wake.set()

    # -- the worker thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        torch.set_grad_enabled(False)
        while not self._stopping:
            self._wake.clear()  # before looking at the queue, so a request arriving now wakes the wait below
            self._admit()
            busy = [served for served in self._served.values() if served.batch.sequences]
            if not busy:
                self._wake.wait(timeout=0.5)
                continue
            for served in busy:
                self._drop_leaving(served)
                if served.batch.sequences:
                    self._step(served)
        for served in self._served.values():
            self._fail_all(served, EngineError("the server is shutting down"))

    def _admit(self) -> None:
        from lawtune.modeling.decoding import STREAM_HOLD_CHARS, RepetitionWatch, TextStream
        from lawtune.serving.batch import Sequence

        while self._pending and self.active_batch_size < self.max_batch_size:
            ticket = self._pending.popleft()
            if ticket.cancelled:
                continue
            if time.monotonic() > ticket.deadline:
                ticket.post(EngineTimeout("the request waited longer than its timeout for a free slot"))
                continue
            served = self._served[ticket.request.model]
            request = ticket.request
            policy = dataclasses.replace(self.decoding, **request.penalties())
            ticket.seq = Sequence(ticket.prompt_ids, temperature=request.temperature, top_p=request.top_p,
                                  seed=request.seed, decoding=policy if policy.penalizes else None,
                                  stop_ids=frozenset(served.loaded.chat.stop_token_ids))
            ticket.stream = TextStream(served.loaded.tokenizer, request.stop,
                                       watch=RepetitionWatch() if policy.repetition_stop else None,
                                       hold=STREAM_HOLD_CHARS if request.stream else None)
            served.tickets[id(ticket.seq)] = ticket
            try:
                token = served.batch.join(ticket.seq)
            except Exception as error:  # a failing prefill must not take the worker (and every request) down
                log.exception("prefill failed")
                served.tickets.pop(id(ticket.seq))
                ticket.post(EngineError(f"generation failed: {error}"))
                self.counts["failed"] += 1
                continue
            self.peak_batch_size = max(self.peak_batch_size, self.active_batch_size)
            if self._consume(served, ticket, token):
                self._remove(served, [ticket.seq])

    def _drop_leaving(self, served: _Served) -> None:
        now = time.monotonic()
        leaving = []
        for seq in served.batch.sequences:
            ticket = served.tickets[id(seq)]
            if ticket.cancelled or now > ticket.deadline:
                self.counts["cancelled" if ticket.cancelled else "timed_out"] += 1
                if not ticket.cancelled:
                    ticket.post(EngineTimeout(f"generation ran past its {ticket.request.timeout_s or self.timeout_s:g} s timeout"))
                leaving.append(seq)
        self._remove(served, leaving)

    def _step(self, served: _Served) -> None:
        try:
            tokens = served.batch.step()
        except Exception as error:
            log.exception("decode step failed")
            self._fail_all(served, EngineError(f"generation failed: {error}"))
            return
        finished = [seq for seq, token in zip(list(served.batch.sequences), tokens)
                    if self._consume(served, served.tickets[id(seq)], token)]
        self._remove(served, finished)

    def _consume(self, served: _Served, ticket: _Ticket, token: int) -> bool:
        """Turn one new token into events; True when the sequence is done."""
        seq, stream, request = ticket.seq, ticket.stream, ticket.request
        reason = None
        if token in served.loaded.chat.stop_token_ids:
            reason = "stop"
        else:
            delta = stream.push(token)
            if delta:
                ticket.post(TextDelta(delta))
            if stream.repeated:  # the answer looped: cut at the last sentence end before the loop
                reason = "repetition"
            elif stream.stopped:  # a stop string
                reason = "stop"
            elif len(seq.generated) >= request.max_tokens:
                reason = "length"
        if reason is None:
            return False
        rest = stream.flush()
        if rest:
            ticket.post(TextDelta(rest))
        ticket.post(Finished(reason, Usage(len(seq.prompt_ids), len(seq.generated))))
        self.counts["finished"] += 1
        return True

    def _remove(self, served: _Served, leaving: list[Any]) -> None:
        served.batch.remove(leaving)
        for seq in leaving:
            served.tickets.pop(id(seq), None)

    def _fail_all(self, served: _Served, error: EngineError) -> None:
        for ticket in served.tickets.values():
            ticket.post(error)
            self.counts["failed"] += 1
        self._remove(served, list(served.batch.sequences))
