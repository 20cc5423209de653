"""The knowledge base in the service: RAG prompts, the `lawtune` response field, and the KB-only fallback.

    lawtune serve runs/demo --open --kb kb.sqlite                    # answers cite retrieved articles
    lawtune serve runs/demo --open --kb kb.sqlite --degrade-to-kb    # paused / breaker open → articles + notice

With `--kb` the app asks the engine with `lawtune.kb.rag`'s prompt (the articles retrieved for the last user
turn) and adds an extension field to the response — on the chat completion object, and on the streamed chunk
that carries `finish_reason`:

    "lawtune": {"references": [{"kind", "law", "article", "sub", "score", "exact", "cite", "version", "text"}],
                "citations": [{"text", "name", "law_full", "article", "sub", "start", "verdict", "detail"}],
                "degraded": false, "cite_constraint": true,
                "quoted": [{"kind", "law", "article", "sub", "score", "exact"}], "attribution": "依据：《民法典》第…条" | null}

`quoted` are the retrieved articles whose words the answer repeats, and `attribution` the line naming those it does
not cite by number (`lawtune.kb.attribution`; `lawtune infer` / `chat` / `eval` print it under the answer, while the
API leaves the message content as the model wrote it and the client shows the line if it likes).

OpenAI clients ignore unknown fields (the official SDK keeps them on `model_extra`). With `--degrade-to-kb`,
a request the kill switch or the open circuit breaker would refuse with 503 gets 200 instead: the notice, then
the top retrieved articles verbatim (no model involved), `"degraded": true` and the notice in the field; the
metrics count it as `lawtune_requests{status="200", reason="kb_fallback"}`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Callable

from lawtune.kb import format_context
from lawtune.kb.rag import INSTRUCTION, Augmented, Rag, hit_record, rag_conversation
from lawtune.text import excerpt

FALLBACK_HEADER = "以下是知识库中与您的问题最相关的法条原文（自动检索，未经模型解读，仅供参考）："
NO_MATCH = "知识库中没有找到与您的问题相关的法条。"


async def augment(rag: Rag, messages: list[dict[str, Any]]) -> Augmented:
    """Retrieval off the event loop: a search takes tens of milliseconds on a large KB."""
    return await asyncio.to_thread(rag.augment, messages)


async def augment_to_fit(rag: Rag, engine: Any, model: str, messages: list[dict[str, Any]],
                         tools: list[dict[str, Any]] | None, wanted: int) -> tuple[Augmented, Any]:
    """Retrieval, then the prompt tokenized (off the event loop) — with as many of the retrieved articles as
    fit: when they push a conversation that fits on its own past the model's context (prompt + `wanted` new
    tokens), the last ones are left out, since a 400 telling the client to shorten its messages would blame it
    for text the server added. When even no article would make it fit, the prompt stays as it is (the 400 is
    then the client's). Costs: the articles' own tokens counted once, one more tokenization per cut."""
    augmented = await augment(rag, messages)

    def tokenize(conversation: Augmented) -> Any:
        return engine.prompt(model, messages=conversation.messages, tools=tools)

    prompt = await asyncio.to_thread(tokenize, augmented)
    limit = engine.context_length(model)
    if limit is None or not augmented.hits or prompt.tokens + wanted <= limit:
        return augmented, prompt
    over = prompt.tokens + wanted - limit
    sizes = await asyncio.to_thread(lambda: [engine.prompt(model, text=format_context([hit], rag.max_chars)).tokens
                                             for hit in augmented.hits])
    instruction = await asyncio.to_thread(lambda: engine.prompt(model, text=INSTRUCTION).tokens)
    if over > sum(sizes) + instruction:  # too long without any article too
        return augmented, prompt
    keep, saved = len(sizes), 0
    while keep > 0 and saved < over:
        keep -= 1
        saved += sizes[keep]
    while True:
        hits = augmented.hits[:keep]
        fitted = Augmented(rag_conversation(messages, hits, rag.max_chars), hits)
        fitted_prompt = await asyncio.to_thread(tokenize, fitted)
        if fitted_prompt.tokens + wanted <= limit or keep == 0:
            return fitted, fitted_prompt
        keep -= 1


def extension(rag: Rag, augmented: Augmented, degraded: bool = False, notice: str | None = None,
              cite_constraint: bool = False) -> Callable[[str], dict[str, Any]]:
    """A function of the finished answer's text → the `lawtune` field of the response (`cite_constraint`: the
    answer's article numbers were decoded from the retrieved articles only)."""

    def field(text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"references": augmented.references(text_chars=rag.max_chars),
                                "citations": rag.check(text), "degraded": degraded,
                                "cite_constraint": cite_constraint}
        if not degraded:  # the retrieved articles the answer repeats, and the line naming those it did not cite
            attributed = rag.attribute(text, augmented.hits)
            body["quoted"] = [hit_record(hit) for hit in attributed.quoted]
            body["attribution"] = attributed.line or None
        if notice:
            body["notice"] = notice
        return body

    return field


def fallback_text(augmented: Augmented, notice: str, max_chars: int) -> str:
    """What a degraded answer says: the notice, then each retrieved article as 《法名》第N条：text."""
    articles = [hit.item for hit in augmented.hits]
    if not articles:
        return f"{notice}\n\n{NO_MATCH}"
    quoted = []
    for item in articles:
        text = excerpt(item.text, max_chars)
        quoted.append(f"{item.cite()}：{text}" if item.kind == "article" else f"问：{item.question}\n答：{text}")
    return f"{notice}\n\n{FALLBACK_HEADER}\n\n" + "\n\n".join(quoted)


async def fallback_response(rag: Rag, messages: list[dict[str, str]], model: str, notice: str, stream: bool,
                            headers: dict[str, str]) -> Any:
    """The 200 answer of the degradation tier, in the shape the client asked for (JSON or SSE)."""
    from fastapi.responses import JSONResponse
    from sse_starlette import EventSourceResponse

    from lawtune.serving.protocol import (ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, Delta,
                                          ResponseMessage, UsageInfo)

    augmented = await augment(rag, messages)
    text = fallback_text(augmented, notice, rag.max_chars)
    field = extension(rag, augmented, degraded=True, notice=notice)(text)
    request_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    usage = UsageInfo(prompt_tokens=0, completion_tokens=0, total_tokens=0)  # no model tokens were spent
    if not stream:
        body = ChatCompletion(id=request_id, created=created, model=model, usage=usage, lawtune=field,
                              choices=[Choice(message=ResponseMessage(content=text), finish_reason="stop")])
        return JSONResponse(body.model_dump(exclude_none=True), headers=headers)

    def chunk(delta: Delta, finish: str | None = None, extra: dict | None = None) -> dict[str, str]:
        body = ChatCompletionChunk(id=request_id, created=created, model=model, lawtune=extra,
                                   choices=[ChunkChoice(delta=delta, finish_reason=finish)])
        return {"data": body.model_dump_json(exclude_none=True)}

    async def events():
        yield chunk(Delta(role="assistant", content=""))
        yield chunk(Delta(content=text))
        yield chunk(Delta(), finish="stop", extra=field)
        yield {"data": "[DONE]"}

    return EventSourceResponse(events(), sep="\n", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                                            **headers})
