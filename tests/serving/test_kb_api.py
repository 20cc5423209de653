"""`lawtune serve --kb`: RAG prompts, the `lawtune` response field read through the official `openai` SDK, and
the degradation tier (`--degrade-to-kb`) on a real server on loopback.

    .venv/bin/pytest tests/serving/test_kb_api.py -q
"""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from gateway_fixtures import metric_value
from live_server import openai_client, start_server

QUESTION = [{"role": "user", "content": "离婚需要什么材料？"}]


@pytest.fixture(scope="module")
def kb_server(tiny_run_dir, bundled_kb):
    from lawtune.serving.settings import ServeSettings

    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=4, default_max_tokens=16,
                                      kb=str(bundled_kb), kb_k=3, degrade_to_kb=True))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(kb_server) -> OpenAI:
    """The OpenAI SDK on the KB server (in place of conftest's `client` on the plain one)."""
    return openai_client(kb_server)


def _expected(bundled_kb):
    from lawtune.kb.rag import Rag

    with Rag.open(bundled_kb, k=3) as rag:
        return rag.augment(QUESTION)


def test_answer_carries_references_and_citations_through_the_openai_sdk(client, bundled_kb, chat_format):
    answer = client.chat.completions.create(messages=QUESTION, max_tokens=8, temperature=0, model=None)
    field = answer.model_extra["lawtune"]  # the SDK keeps unknown fields; nothing else about the answer changes
    assert answer.choices[0].message.content and answer.object == "chat.completion"
    expected = _expected(bundled_kb)
    assert [(r["law"], r["article"]) for r in field["references"]] == [(h.item.law, h.item.article) for h in expected.hits]
    assert field["references"][0]["cite"].startswith("《民法典》第") and field["references"][0]["text"]
    assert field["degraded"] is False and isinstance(field["citations"], list)
    assert field["cite_constraint"] is True  # article numbers decoded from the retrieved articles, as eval does
    # attribution of what the answer repeats (the tiny model's words rarely are an article's): the same as eval's
    from lawtune.kb.rag import Rag

    with Rag.open(bundled_kb, k=3) as rag:
        attributed = rag.attribute(answer.choices[0].message.content, expected.hits)
    assert [(q["law"], q["article"]) for q in field["quoted"]] == [(h.item.law, h.item.article) for h in attributed.quoted]
    assert field["attribution"] == (attributed.line or None)
    # the model was asked the RAG prompt: the prompt tokens are those of the augmented conversation
    assert answer.usage.prompt_tokens == len(chat_format.encode_prompt(expected.messages))


def test_a_json_answer_is_decoded_by_its_schema_not_the_citation_constraint(client):
    answer = client.chat.completions.create(messages=QUESTION, max_tokens=8, temperature=0, model=None,
                                            response_format={"type": "json_object"})
    assert answer.model_extra["lawtune"]["cite_constraint"] is False


def test_streamed_answer_has_the_field_on_the_finishing_chunk(client):
    chunks = list(client.chat.completions.create(messages=QUESTION, max_tokens=8, temperature=0, stream=True,
                                                 model=None))
    with_field = [c for c in chunks if (c.model_extra or {}).get("lawtune")]
    assert len(with_field) == 1 and with_field[0].choices[0].finish_reason in ("stop", "length")
    assert len(with_field[0].model_extra["lawtune"]["references"]) == 3


def test_articles_that_would_overflow_the_context_are_left_out(kb_server, bundled_kb, chat_format):
    """A conversation that fits the context on its own is answered, with as many retrieved articles as fit
    (the last-ranked left out), never told to shorten messages for the text the server added; one too long
    without any article still gets the 400."""
    engine = kb_server.app.state.engine
    limit = engine.context_length(engine.model_ids[0])
    expected = _expected(bundled_kb)
    added = len(chat_format.encode_prompt(expected.messages)) - len(chat_format.encode_prompt(QUESTION))
    assert added > 40, added  # three articles are worth cutting

    def conversation(chars: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": "合同" * chars}, {"role": "assistant", "content": "好的"}, *QUESTION]

    low, high = 0, limit  # the longest earlier turn that leaves the bare conversation `added // 2` tokens of room
    while low < high:
        middle = (low + high + 1) // 2
        if len(chat_format.encode_prompt(conversation(middle))) + 8 <= limit - added // 2:
            low = middle
        else:
            high = middle - 1
    messages = conversation(low)
    bare = len(chat_format.encode_prompt(messages))
    assert bare + 8 <= limit < bare + added + 8  # fits alone, not with every article

    answer = httpx.post(kb_server.url + "/v1/chat/completions", json={"messages": messages, "max_tokens": 8},
                        timeout=120)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    references = body["lawtune"]["references"]
    assert len(references) < len(expected.hits)
    assert [r["article"] for r in references] == [h.item.article for h in expected.hits[:len(references)]]
    assert body["usage"]["prompt_tokens"] + 8 <= limit

    too_long = httpx.post(kb_server.url + "/v1/chat/completions",
                          json={"messages": conversation(low + limit), "max_tokens": 8}, timeout=120)
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"


def test_without_kb_the_response_has_no_extension(live_server):
    body = httpx.post(live_server.url + "/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 4},
                      timeout=60).json()
    assert "lawtune" not in body and body["choices"][0]["message"]["content"] is not None


def test_paused_service_answers_with_the_articles_and_counts_it(kb_server, client):
    gateway = kb_server.app.state.gateway
    gateway.switch.pause("维护中，请稍后再试。")
    try:
        assert httpx.get(kb_server.url + "/readyz", timeout=10).json()["kb_fallback"] is True
        answer = client.chat.completions.create(messages=QUESTION, max_tokens=8, model=None)
        text = answer.choices[0].message.content
        field = answer.model_extra["lawtune"]
        assert text.startswith("维护中，请稍后再试。") and "《民法典》第" in text
        assert field["degraded"] is True and field["notice"] == "维护中，请稍后再试。"
        assert answer.usage.completion_tokens == 0 and len(field["references"]) == 3
        chunks = list(client.chat.completions.create(messages=QUESTION, stream=True, model=None))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert chunks[-1].model_extra["lawtune"]["degraded"] is True
    finally:
        gateway.switch.resume()
    metrics = httpx.get(kb_server.url + "/metrics", timeout=10).text
    assert metric_value(metrics, "lawtune_requests_total", status="200", reason="kb_fallback") >= 2
    assert client.chat.completions.create(messages=QUESTION, max_tokens=4, model=None).model_extra["lawtune"]["degraded"] is False


def test_open_breaker_answers_with_the_articles(kb_server):
    breaker = kb_server.app.state.gateway.breaker
    for _ in range(breaker.threshold):
        breaker.record_failure("test: engine down")
    try:
        response = httpx.post(kb_server.url + "/v1/chat/completions", json={"messages": QUESTION}, timeout=60)
        assert response.status_code == 200
        body = response.json()
        assert body["lawtune"]["degraded"] is True and "《民法典》第" in body["choices"][0]["message"]["content"]
    finally:
        breaker.record_success()


def test_without_degrade_flag_a_paused_kb_server_still_says_503(tiny_run_dir, bundled_kb):
    from lawtune.serving.settings import ServeSettings

    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=2, default_max_tokens=4,
                                      serve_base=False, kb=str(bundled_kb)))
    try:
        live.app.state.gateway.switch.pause()
        response = httpx.post(live.url + "/v1/chat/completions", json={"messages": QUESTION}, timeout=60)
        assert response.status_code == 503 and response.json()["error"]["code"] == "service_paused"
    finally:
        live.stop()
