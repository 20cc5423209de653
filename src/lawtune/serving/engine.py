"""Generation engines behind the API: the interface every engine implements, and the local batching engine.

    engine = LocalEngine.from_run("runs/demo", max_batch_size=8)
    await engine.start()
    request = GenerationRequest(messages=[{"role": "user", "content": "离婚需要什么材料？"}],
                                model=engine.model_ids[0], max_tokens=64)
    async for event in engine.generate(request):
        if isinstance(event, TextDelta): print(event.text, end="")
        else: print(event.finish_reason, event.usage)      # Finished: always the last event
    await engine.stop()

The app (`lawtune.serving.app`) only talks to the `Engine` protocol below, so the local engine and the
gateway's `UpstreamEngine` (an OpenAI-compatible URL behind httpx) are interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Literal, Protocol, runtime_checkable

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
    """The last event of every generation."""

    finish_reason: Literal["stop", "length"]
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
