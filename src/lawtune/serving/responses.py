"""Responses: the engine's events rendered as OpenAI's chat completion or (text) completion — one JSON body, or
server-sent events in OpenAI's chunk format.

    shape = ChatShape(generation)              # ToolChatShape with tools; CompletionShape for /v1/completions
    return await respond(shape, events, ticket, include_usage=False, keepalive_s=15, headers=limits)

A shape collects the events of the request's n choices and says what a choice, a chunk and the whole answer
look like; `respond` picks JSON or SSE by `generation.stream`. Streams are framed by sse-starlette, with a
`: ping` comment every `keepalive_s` while the request waits for a slot and until it ends, and always end with
`data: [DONE]` — after an error too, which arrives as a `data: {"error": …}` event once headers are sent. A
stream that holds a slot waits for its first event before answering, so its early errors keep their status.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any, AsyncIterator, Callable

from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from lawtune.serving import tool_calls
from lawtune.serving.engines import Finished, GenerationEvent, GenerationRequest, TextDelta, TokenLogprob
from lawtune.serving.errors import ApiError
from lawtune.serving.protocol import ChoiceLogprobs, CompletionLogprobs, TokenLogprobOut, TopLogprob, UsageInfo

log = logging.getLogger("lawtune.serving")


async def respond(shape: "Shape", events: AsyncIterator[GenerationEvent], ticket: Any, include_usage: bool,
                  keepalive_s: float, headers: dict[str, str]) -> Any:
    """The answer: one JSON body (all events collected), or an SSE stream (`ticket`: the gateway's, whose slot
    a stream may still be waiting for)."""
    if not shape.generation.stream:
        return JSONResponse(await collect(shape, events), headers=headers)
    first = None
    if ticket.has_slot:  # errors before the first token still get their HTTP status
        first = await first_event(events)
    return EventSourceResponse(sse(shape, ticket, first, events, include_usage), ping=keepalive_s, sep="\n",
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers})


async def first_event(events: AsyncIterator[GenerationEvent]) -> GenerationEvent:
    """The first event (closing the iterator, so the slot is freed, when it raises)."""
    try:
        return await anext(events)
    except BaseException:
        await events.aclose()
        raise


async def collect(shape: Shape, events: AsyncIterator[GenerationEvent]) -> dict[str, Any]:
    """Every event into the shape; the whole answer as one JSON body."""
    async with contextlib.aclosing(events):
        async for event in events:
            shape.add(event)
    if not shape.done():
        raise ApiError(503, "the engine ended the answer without finishing it", "service_unavailable",
                       code="engine_error")
    return shape.whole()


async def sse(shape: Shape, ticket: Any, first: GenerationEvent | None, events: AsyncIterator[GenerationEvent],
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


class Shape:
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


class ChatShape(Shape):
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


class CompletionShape(Shape):
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


class ToolChatShape(ChatShape):
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
