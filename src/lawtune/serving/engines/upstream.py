"""`UpstreamEngine`: the engine interface over any OpenAI-compatible server (vLLM, another lawtune).

    lawtune serve --upstream http://10.0.0.5:8000 [RUN]     # RUN (optional) gives exact prompt-token counts
    engine = UpstreamEngine("http://10.0.0.5:8000", api_key=None, chat=None)
    await engine.start()                                    # learns model ids (and max_model_len) from /v1/models
    async for event in engine.generate(GenerationRequest(...)): ...

Every request is forwarded as a streaming chat completion or completion (`stream_options.include_usage`)
with every field the client set that vLLM understands (sampling, penalties, logprobs, n, response_format,
`tools` / `tool_choice` / `parallel_tool_calls` unchanged: vLLM's tool parser answers, its tool-call deltas
are relayed as they come, ...), so the gateway sees the first token as soon as the upstream makes it and gets the upstream's own token
usage to settle rate limits. An adapter's context length is its parent model's (vLLM lists it on the base). Failures are mapped for the circuit breaker: unreachable / 5xx / broken stream → EngineError,
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
from lawtune.serving.engines import (EngineError, EngineTimeout, Finished, GenerationEvent, GenerationRequest,
                                     Prompt, TextDelta, TokenLogprob, Usage)
from lawtune.serving.errors import ApiError

log = logging.getLogger("lawtune.gateway")


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """Without the upstream's tokenizer: one token per character plus a few per message. For Chinese text
    this over-counts a little (safe for up-front rate-limit charges, which are corrected from usage)."""
    return sum(len(m.get("content") or "") + len(json.dumps(m.get("tool_calls") or "")) + 4 for m in messages) + 2


class UpstreamEngine:
    def __init__(self, base_url: str, api_key: str | None = None, chat: Any = None, run_dir: str | None = None,
                 read_timeout_s: float = 300.0, connect_timeout_s: float = 5.0):
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        self.chat = chat  # a lawtune ChatFormat of the same model: exact prompt counts; None → estimate
        self.run_dir = run_dir  # a run folder whose tokenizer + template give `chat` at start()
        self.read_timeout_s = read_timeout_s  # between two chunks; the request's deadline bounds the whole answer
        self.connect_timeout_s = connect_timeout_s
        self.model_ids: list[str] = []
        self._context: dict[str, int] = {}
        self._client: httpx.AsyncClient | None = None
        self._active = 0
        self.progress = 0  # stream events received: the gateway tells a stalled upstream from a long answer

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def start(self, attempts: int = 20, wait_s: float = 0.5) -> None:
        if self.chat is None and self.run_dir is not None:
            self.chat = await asyncio.to_thread(_run_chat_format, self.run_dir)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                         timeout=httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s),
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
        cards = {card["id"]: card for card in payload.get("data", [])}
        if not cards:
            raise LawtuneError(f"upstream {self.base_url} serves no models (GET /v1/models is empty)")
        for model, card in cards.items():
            # vLLM publishes the context length on the base; an adapter (`parent`) has its parent's
            length = card.get("max_model_len")
            if not isinstance(length, int):
                length = cards.get(card.get("parent") or "", {}).get("max_model_len")
            if isinstance(length, int):
                self._context[model] = length
        self._cards = cards
        # An adapter model (vLLM: `--lora-modules legal=…`, listed after the base) is the better default.
        adapters = [model for model, card in cards.items() if card.get("parent")]
        self.model_ids = adapters + [model for model in cards if model not in adapters]

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- the engine interface -------------------------------------------------------------------------

    def prompt(self, model: str, *, messages: list[dict[str, Any]] | None = None, text: str | None = None,
               ids: list[int] | None = None, tools: list[dict[str, Any]] | None = None) -> Prompt:
        # tools only make the count exact: they reach the upstream as the client sent them (passthrough)
        if ids is None and self.chat is not None:
            if messages is not None:
                ids = self.chat.encode_prompt(messages, tools=tools) if tools else self.chat.encode_prompt(messages)
            else:
                ids = self.chat.tokenizer(text)["input_ids"]
        if ids is not None:
            return Prompt(len(ids), list(ids), messages=messages, text=text, tools=tools)
        estimate = estimate_tokens(messages) if messages is not None else len(text or "") + 1
        if tools:
            estimate += len(json.dumps(tools, ensure_ascii=False))
        return Prompt(estimate, None, messages=messages, text=text, tools=tools)

    def context_length(self, model: str) -> int | None:
        return self._context.get(model)

    def model_info(self, model: str) -> dict[str, Any]:
        card = getattr(self, "_cards", {}).get(model, {})
        info = {key: card[key] for key in ("root", "parent") if card.get(key)}
        if model in self._context:
            info["max_model_len"] = self._context[model]
        return info

    @property
    def active_batch_size(self) -> int:
        return self._active  # requests forwarded and not finished (the upstream batches them)

    @property
    def queue_depth(self) -> int:
        return 0  # anything queued is queued upstream, where we cannot see it

    def _payload(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """The path and body to send: every field the client set, in vLLM's names, streamed with usage."""
        prompt = request.prompt
        payload: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens, "n": request.n,
                                   "temperature": request.temperature, "top_p": request.top_p, "stream": True,
                                   "stream_options": {"include_usage": True}}
        if prompt.messages is not None:
            path, payload["messages"] = "/v1/chat/completions", prompt.messages
        else:
            path, payload["prompt"] = "/v1/completions", prompt.text if prompt.text is not None else prompt.ids
        optional = {"seed": request.seed, "stop": request.stop or None, "top_k": request.top_k or None,
                    "min_p": request.min_p or None,
                    "logit_bias": {str(k): v for k, v in request.logit_bias.items()} or None}
        payload.update({key: value for key, value in optional.items() if value is not None})
        if request.logprobs is not None:
            if prompt.messages is not None:
                payload.update(logprobs=True, top_logprobs=request.logprobs)
            else:
                payload["logprobs"] = request.logprobs
        if request.json_schema is not None:
            payload["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": "response", "schema": request.json_schema}}
        payload.update(request.penalties())  # the client's own; the upstream's defaults apply otherwise
        payload.update(request.passthrough)  # as the client sent them (e.g. response_format, user)
        return path, payload

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        if self._client is None:
            raise EngineError("upstream engine is not started")
        loop = asyncio.get_running_loop()
        # the request's deadline (time.monotonic, the same clock as the loop's) is the gateway's
        deadline = request.deadline if request.deadline is not None else loop.time() + self.read_timeout_s
        headers = {"X-Request-Id": request.request_id} if request.request_id else {}
        # The deadline wraps each await, never a `yield`: a timeout scope spanning a yield would cancel the
        # consumer's code instead of ours.
        self._active += 1
        response: httpx.Response | None = None
        events: AsyncIterator[GenerationEvent] | None = None
        try:
            path, payload = self._payload(request)
            outgoing = self._client.build_request("POST", path, json=payload, headers=headers)
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
                self.progress += 1
                yield event
        except TimeoutError:
            raise EngineTimeout("upstream gave no complete answer before the request's deadline") from None
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
    """OpenAI SSE chunks (chat or completions) → TextDelta… and one Finished per choice. A stream that ends
    before every choice finished is an EngineError."""
    finished: dict[int, tuple[str, str | None]] = {}
    usage: Usage | None = None
    pieces = [0] * request.n
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
            index = int(choice.get("index") or 0)
            text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
            calls = (choice.get("delta") or {}).get("tool_calls") or None  # vLLM's parser read them: relayed
            logprobs = _logprobs(choice.get("logprobs"))
            if text or logprobs or calls:
                pieces[min(index, request.n - 1)] += 1
                yield TextDelta(text or "", index, logprobs, tool_calls=calls)
            if choice.get("finish_reason"):
                finished[index] = (choice["finish_reason"], choice.get("stop_reason"))
    if len(finished) < request.n:
        raise EngineError("upstream stream ended before the answer finished")
    prompt_tokens = usage.prompt_tokens if usage else request.prompt.tokens
    for index, (finish_reason, stop_reason) in sorted(finished.items()):
        # usage is one total for all choices: the first Finished carries it, the rest say 0 more tokens
        completion = (usage.completion_tokens if usage else sum(pieces)) if index == min(finished) else 0
        # a lawtune upstream says a repetition stop as vLLM's stop_reason (what the app turns it back into)
        reason = ("length" if finish_reason == "length" else "tool_calls" if finish_reason == "tool_calls"
                  else "repetition" if stop_reason == "repetition" else "stop")
        yield Finished(reason, Usage(prompt_tokens, completion), index)


def _logprobs(payload: Any) -> list[TokenLogprob] | None:
    """An upstream choice's logprobs, chat style (`content`) or completions style (`tokens`...)."""
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("content"), list):
        return [TokenLogprob(item.get("token", ""), float(item.get("logprob", 0.0)), list(item.get("bytes") or []),
                             [(top.get("token", ""), float(top.get("logprob", 0.0)), list(top.get("bytes") or []))
                              for top in item.get("top_logprobs") or []])
                for item in payload["content"]]
    tokens = payload.get("tokens") or []
    values = payload.get("token_logprobs") or []
    tops = payload.get("top_logprobs") or [None] * len(tokens)
    return [TokenLogprob(token, float(value or 0.0), list(token.encode()),
                         [(name, float(lp), list(name.encode())) for name, lp in (top or {}).items()])
            for token, value, top in zip(tokens, values, tops)]
