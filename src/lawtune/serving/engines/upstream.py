"""`UpstreamEngine`: the engine interface over any OpenAI-compatible server (vLLM, another lawtune).

    lawtune serve --upstream http://10.0.0.5:8000 [RUN]     # RUN (optional) gives exact prompt-token counts
    engine = UpstreamEngine("http://10.0.0.5:8000", api_key=None, chat=None)
    await engine.start()                                    # learns model ids (and max_model_len) from /v1/models
    async for event in engine.generate(GenerationRequest(...)): ...

Every request is forwarded as a streaming chat completion (`stream_options.include_usage`), so the gateway
sees the first token as soon as the upstream makes it and gets the upstream's own token usage to settle
rate limits. Failures are mapped for the circuit breaker: unreachable / 5xx / broken stream → EngineError,
past the deadline → EngineTimeout, an upstream 4xx → the same ApiError passed through (the upstream is
alive; the request was wrong).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator

import httpx

from lawtune.errors import LawtuneError
from lawtune.serving.engine import (EngineError, EngineTimeout, Finished, GenerationEvent, GenerationRequest,
                                    TextDelta, Usage)
from lawtune.serving.errors import ApiError

log = logging.getLogger("lawtune.gateway")


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """Without the upstream's tokenizer: one token per character plus a few per message. For Chinese text
    this over-counts a little (safe for up-front rate-limit charges, which are corrected from usage)."""
    return sum(len(m.get("content", "")) + 4 for m in messages) + 2


class UpstreamEngine:
    def __init__(self, base_url: str, api_key: str | None = None, chat: Any = None, run_dir: str | None = None,
                 default_timeout_s: float = 300.0, connect_timeout_s: float = 5.0):
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        self.chat = chat  # a lawtune ChatFormat of the same model: exact prompt counts; None → estimate
        self.run_dir = run_dir  # a run folder whose tokenizer + template give `chat` at start()
        self.default_timeout_s = default_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.model_ids: list[str] = []
        self._context: dict[str, int] = {}
        self._client: httpx.AsyncClient | None = None
        self._active = 0

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def start(self, attempts: int = 20, wait_s: float = 0.5) -> None:
        if self.chat is None and self.run_dir is not None:
            self.chat = await asyncio.to_thread(_run_chat_format, self.run_dir)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                         timeout=httpx.Timeout(self.default_timeout_s, connect=self.connect_timeout_s),
                                         limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        last: Exception | None = None
        for _ in range(attempts):  # the upstream may still be loading its model
            try:
                response = await self._client.get("/v1/models")
                if response.status_code == 200:
                    self._read_models(response.json())
                    return
                last = RuntimeError(f"GET /v1/models answered {response.status_code}: {response.text[:200]}")
            except (httpx.HTTPError, ValueError) as error:
                last = error
            await asyncio.sleep(wait_s)
        await self.stop()
        raise LawtuneError(f"upstream {self.base_url} did not list its models ({last}); start the upstream "
                           "engine first (e.g. `vllm serve BASE --enable-lora --lora-modules legal=RUN/adapter`) "
                           "and check the URL and --upstream-key")

    def _read_models(self, payload: dict[str, Any]) -> None:
        ids = []
        for card in payload.get("data", []):
            ids.append(card["id"])
            if isinstance(card.get("max_model_len"), int):  # vLLM publishes the context length here
                self._context[card["id"]] = card["max_model_len"]
        if not ids:
            raise LawtuneError(f"upstream {self.base_url} serves no models (GET /v1/models is empty)")
        # An adapter model (vLLM: `--lora-modules legal=…`, listed after the base) is the better default.
        adapters = [card["id"] for card in payload["data"] if card.get("parent")]
        self.model_ids = adapters + [i for i in ids if i not in adapters]

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- the engine interface -------------------------------------------------------------------------

    def count_prompt_tokens(self, messages: list[dict[str, str]], model: str) -> int:
        if self.chat is not None:
            return len(self.chat.encode_prompt(messages))
        return estimate_tokens(messages)

    def context_length(self, model: str) -> int | None:
        return self._context.get(model)

    @property
    def active_batch_size(self) -> int:
        return self._active  # requests forwarded and not finished (the upstream batches them)

    @property
    def queue_depth(self) -> int:
        return 0  # anything queued is queued upstream, where we cannot see it

    def _payload(self, request: GenerationRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": request.model, "messages": request.messages, "max_tokens": request.max_tokens,
            "temperature": request.temperature, "top_p": request.top_p, "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.seed is not None:
            payload["seed"] = request.seed
        if request.stop:
            payload["stop"] = request.stop
        payload.update(request.penalties())  # the client's own; the upstream's defaults apply otherwise
        return payload

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        if self._client is None:
            raise EngineError("upstream engine is not started")
        timeout = request.timeout_s or self.default_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout
        headers = {"X-Request-Id": request.request_id} if request.request_id else {}
        # The deadline wraps each await, never a `yield`: a timeout scope spanning a yield would cancel the
        # consumer's code instead of ours.
        self._active += 1
        response: httpx.Response | None = None
        events: AsyncIterator[GenerationEvent] | None = None
        try:
            outgoing = self._client.build_request("POST", "/v1/chat/completions", json=self._payload(request),
                                                  headers=headers)
            async with asyncio.timeout_at(deadline):
                response = await self._client.send(outgoing, stream=True)
                if response.status_code != 200:
                    await _raise_for_upstream(response)
            events = _events(response, request)
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events)
                except StopAsyncIteration:
                    break
                yield event
        except TimeoutError:
            raise EngineTimeout(f"upstream gave no complete answer within {timeout:g} s") from None
        except httpx.TimeoutException as error:
            raise EngineTimeout(f"upstream timed out: {type(error).__name__}") from None
        except httpx.HTTPError as error:
            raise EngineError(f"upstream {self.base_url} failed: {type(error).__name__}: {error}") from None
        finally:
            self._active -= 1
            if events is not None:
                await events.aclose()
            if response is not None:
                await response.aclose()  # closing mid-answer drops the connection: the upstream frees the slot


def _run_chat_format(run_dir: str) -> Any:
    """The run's tokenizer and stored template: what the upstream (serving the same run) will count."""
    from pathlib import Path

    from lawtune.modeling.chat import ChatFormat
    from lawtune.modeling.loading import load_tokenizer
    from lawtune.modeling.runs import is_run_dir, read_run

    if not is_run_dir(Path(run_dir)):
        raise LawtuneError(f"{run_dir} is not a run folder; with --upstream, RUN only supplies the tokenizer "
                           "and template for exact token counts — pass a run folder or leave it out")
    run = read_run(run_dir)
    return ChatFormat(load_tokenizer(run.tokenizer_dir), run.template)


async def _raise_for_upstream(response: httpx.Response) -> None:
    """Upstream 4xx → the same ApiError (its message kept); 5xx → EngineError for the breaker."""
    body = (await response.aread()).decode("utf-8", "replace")
    if response.status_code >= 500:
        raise EngineError(f"upstream answered {response.status_code}: {body[:300]}")
    try:
        error = json.loads(body)["error"]
        message = error.get("message") or body
    except (ValueError, KeyError, TypeError, AttributeError):
        error, message = {}, body[:500] or f"upstream answered {response.status_code}"
    headers = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
    raise ApiError(response.status_code, f"upstream: {message}", error.get("type") or "invalid_request_error",
                   param=error.get("param"), code=error.get("code"), headers=headers)


async def _events(response: httpx.Response, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
    """OpenAI SSE chunks → TextDelta… Finished. A stream that ends without a finish is an EngineError."""
    finish_reason: str | None = None
    stop_reason: str | None = None
    usage: Usage | None = None
    pieces = 0
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            raise EngineError(f"upstream sent a malformed stream chunk: {data[:200]!r}") from None
        if "error" in chunk:  # an error reported mid-stream
            raise EngineError(f"upstream failed mid-answer: {str(chunk['error'])[:300]}")
        if chunk.get("usage"):
            usage = Usage(chunk["usage"].get("prompt_tokens", 0), chunk["usage"].get("completion_tokens", 0))
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                pieces += 1
                yield TextDelta(text)
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
                stop_reason = choice.get("stop_reason")
    if finish_reason is None:
        raise EngineError("upstream stream ended before the answer finished")
    if usage is None:  # an upstream that ignores include_usage: one chunk ≈ one token
        usage = Usage(estimate_tokens(request.messages), pieces)
    # a lawtune upstream says a repetition stop as vLLM's stop_reason (what the app turns it back into)
    reason = "length" if finish_reason == "length" else "repetition" if stop_reason == "repetition" else "stop"
    yield Finished(reason, usage)
