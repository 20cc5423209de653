"""Generation engines behind the API: the interface every engine implements, and the two engines.

    from lawtune.serving.engines import GenerationRequest, TextDelta, Finished
    from lawtune.serving.engines.local import LocalEngine          # transformers + LoRA adapters, batching
    from lawtune.serving.engines.upstream import UpstreamEngine    # any OpenAI-compatible server (vLLM)

    engine = LocalEngine("runs/demo", lora_modules={"other": "runs/other"})
    await engine.start()
    prompt = engine.prompt("runs-demo", messages=[{"role": "user", "content": "离婚需要什么材料？"}])
    request = GenerationRequest(prompt=prompt, model=engine.model_ids[0], max_tokens=64)
    async for event in engine.generate(request):
        if isinstance(event, TextDelta): print(event.text, end="")
        else: print(event.finish_reason, event.usage)     # one Finished per choice (request.n of them)
    await engine.stop()

A request is tokenized once (`engine.prompt`), and the ids travel with it: the app counts them for the
context check and the rate limit, the local engine prefills them. The request's deadline is set by one
owner (the gateway's admission ticket: arrival + `--timeout`) and every engine enforces that same instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal, Protocol, runtime_checkable


@dataclass
class Prompt:
    """What the model is asked: chat messages or a raw text, tokenized once.

    `ids` is None when the engine has no tokenizer (an upstream without a run folder); `tokens` is then an
    estimate, corrected from the upstream's usage afterwards."""

    tokens: int
    ids: list[int] | None = None
    messages: list[dict[str, Any]] | None = None  # chat completions (OpenAI shapes: tool_calls, tool turns)
    text: str | None = None  # completions (None when the client sent token ids)
    tools: list[dict[str, Any]] | None = None  # OpenAI tool definitions rendered into the prompt


@dataclass
class GenerationRequest:
    """One completion to generate (n choices); already validated by the app (limits live in `protocol.py`)."""

    prompt: Prompt
    model: str  # one of engine.model_ids
    max_tokens: int  # new tokens at most per choice; the app has checked prompt + max_tokens fits the context
    n: int = 1  # choices, generated side by side in the batch; events carry their `index`
    temperature: float = 1.0  # 0 → greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 → off
    min_p: float = 0.0  # 0 → off
    seed: int | None = None  # sampling seed (choice i uses seed + i); None → nondeterministic
    logit_bias: dict[int, float] = field(default_factory=dict)
    stop: list[str] = field(default_factory=list)  # stop strings, not included in the output
    logprobs: int | None = None  # None: no logprobs; k ≥ 0: the sampled token's logprob and the k most likely
    json_schema: dict[str, Any] | None = None  # constrained decoding (response_format json_object/json_schema)
    grammar: str | None = None  # an llguidance Lark grammar (tool_choice required / named); wins over json_schema
    # tool_choice auto on a local engine: decode under the lazy call grammar with the conversation's rules
    # (lawtune.tools.constrain.LazyCall over prompt.tools and prompt.messages), as eval, infer and chat do
    tool_rules: bool = False
    # serve --kb on a local engine: the prompt's citation constraint (`Rag.constraint` of its one prompt, as infer
    # builds it) — an article number in the answer may only be one of the retrieved articles
    # (lawtune.kb.cite_constrain.CiteGrammar); ignored under any other grammar
    cite: Any = None
    deadline: float | None = None  # time.monotonic() past which the request fails (EngineTimeout); None: none
    request_id: str = ""  # the X-Request-Id, for logs and upstream correlation
    # repetition control for this request; None → the engine's default policy (serve's --repetition-* flags)
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # a streamed answer may show text early (a repetition stop can then not take it back); a non-streamed one
    # holds it until the end, so it is exactly the cut answer eval would give
    stream: bool = True
    # fields an upstream engine understands that the local engine has no use for (forwarded as sent)
    passthrough: dict[str, Any] = field(default_factory=dict)

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
class TokenLogprob:
    """One generated token's log-probability under the model (before penalties, bias and grammar: vLLM's
    raw logprobs), and the `top` most likely alternatives as (token text, logprob, bytes)."""

    token: str
    logprob: float
    bytes: list[int]
    top: list[tuple[str, float, list[int]]] = field(default_factory=list)


@dataclass
class TextDelta:
    """New answer text of choice `index`, with the logprobs of the tokens generated since the last delta."""

    text: str
    index: int = 0
    logprobs: list[TokenLogprob] | None = None
    # OpenAI tool-call deltas an upstream already parsed (vLLM's tool parser), relayed unchanged
    tool_calls: list[dict[str, Any]] | None = None


@dataclass
class Finished:
    """The last event of each choice. "repetition": the answer looped and was cut (lawtune.modeling.decoding).

    `usage` counts this choice's completion tokens and the (shared) prompt."""

    finish_reason: Literal["stop", "length", "repetition", "tool_calls"]  # tool_calls: an upstream's verdict
    usage: Usage
    index: int = 0
    logprobs: list[TokenLogprob] | None = None  # tokens not yet reported with a delta
    lawtune: dict[str, Any] | None = None  # merged into the response's `lawtune` field (the agent loop's trace)


GenerationEvent = TextDelta | Finished


class EngineError(Exception):
    """The engine could not generate (model crashed, upstream unreachable). The app answers 503;
    the gateway's circuit breaker counts these."""


class EngineTimeout(EngineError):
    """The request ran past its deadline. The app answers 504 (or an error event mid-stream)."""


@runtime_checkable
class Engine(Protocol):
    """What the app needs from an engine.

    - `prompt(model, messages=… | text=… | ids=…, tools=…)` tokenizes once (tools: OpenAI tool definitions
      rendered by the chat template); `Prompt.tokens` is exactly what
      `Finished.usage.prompt_tokens` will say (an estimate when the engine has no tokenizer).
    - `generate(request)` is an async iterator of `TextDelta`… and one `Finished` per choice. Closing it
      early (the client disconnected) must free the request's slots at the engine's next step. It raises
      `EngineTimeout` past `request.deadline`, `EngineError` when the engine fails, or an
      `lawtune.serving.errors.ApiError` for a request it cannot serve (a 4xx, passed through unchanged).
    - `context_length(model)` is the most prompt + new tokens the model accepts (None: unknown, the app
      then skips the context check and leaves it to the engine).
    - `model_info(model)` is extra fields of the model's card in /v1/models (`parent`, `max_model_len`).
    - `active_batch_size` (sequences being generated now) and `queue_depth` (accepted, not yet started)
      are for metrics and admission; reading them must be cheap and thread-safe.
    """

    model_ids: list[str]  # served model names: the first is the default (the run's adapter model)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def prompt(self, model: str, *, messages: list[dict[str, Any]] | None = None, text: str | None = None,
               ids: list[int] | None = None, tools: list[dict[str, Any]] | None = None) -> Prompt: ...

    def context_length(self, model: str) -> int | None: ...

    def model_info(self, model: str) -> dict[str, Any]: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]: ...

    @property
    def active_batch_size(self) -> int: ...

    @property
    def queue_depth(self) -> int: ...
