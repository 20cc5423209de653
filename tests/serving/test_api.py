"""The OpenAI-compatible API, driven by the official `openai` client against a real server on loopback.

    .venv/bin/pytest tests/serving/test_api.py -q
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from openai import AsyncOpenAI, BadRequestError, NotFoundError
from live_server import wait_until

QUESTION = [{"role": "user", "content": "公司拖欠工资怎么办？"}]


def test_models_lists_the_adapter_model_the_base_and_its_alias(client, tiny_run_dir):
    cards = {model.id: model for model in client.models.list().data}
    assert list(cards) == [tiny_run_dir.name, f"{tiny_run_dir.name}:base", "base"]
    assert cards[tiny_run_dir.name].model_extra["parent"] == f"{tiny_run_dir.name}:base"
    assert cards["base"].model_extra["root"] == f"{tiny_run_dir.name}:base"


def test_non_streaming_answer_has_ids_and_usage_matching_the_tokenizer(client, chat_format):
    answer = client.chat.completions.create(model=client.models.list().data[0].id, messages=QUESTION,
                                            max_tokens=12, temperature=0)
    assert answer.id.startswith("chatcmpl-") and len(answer.id) > 20
    assert answer.created > 0 and answer.object == "chat.completion"
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert answer.usage.prompt_tokens == len(chat_format.encode_prompt(QUESTION))
    # the random tiny model hardly ever emits <end_of_turn>, so it runs to max_tokens
    assert choice.finish_reason == "length" and answer.usage.completion_tokens == 12
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 12


def test_streaming_matches_non_streaming_and_reports_usage(client):
    kwargs = dict(model=client.models.list().data[0].id, messages=QUESTION, max_tokens=10, temperature=0)
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_stream_ends_with_done_on_the_wire(live_server):
    body = {"messages": QUESTION, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", live_server.url + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in events)


def test_stop_string_ends_the_answer_before_it(client):
    full = client.chat.completions.create(messages=QUESTION, model=client.models.list().data[0].id,
                                          max_tokens=16, temperature=0).choices[0].message.content
    # a stop string of two whole characters: the random tiny model also emits partial UTF-8 bytes (shown as
    # U+FFFD), which a streaming detokenizer may hold back, so they make no stable stop string
    start = next(i for i in range(3, len(full) - 1) if "\ufffd" not in full[i:i + 2])
    stop = full[start:start + 2]
    cut = client.chat.completions.create(messages=QUESTION, model=client.models.list().data[0].id,
                                         max_tokens=16, temperature=0, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.message.content == full[: full.index(stop)]


def test_base_model_is_served_separately(client, tiny_run_dir):
    ids = [model.id for model in client.models.list().data][:2]
    answers = {model: client.chat.completions.create(model=model, messages=QUESTION, max_tokens=12,
                                                     temperature=0).choices[0].message.content for model in ids}
    assert answers[f"{tiny_run_dir.name}:base"] != answers[tiny_run_dir.name]


PROMPTS = ["离婚后孩子抚养权归谁？", "交通事故对方全责，我能要求哪些赔偿？" * 3, "租房押金不退怎么办",
           "试用期可以随时辞职吗？" * 6, "借条", "劳动合同到期不续签有补偿吗？公司说没有。" * 2,
           "遗产继承的顺序是什么？", "被狗咬了找谁赔？" * 4]


def test_concurrent_greedy_answers_equal_the_same_prompts_run_alone(live_server):
    async def ask(client, index, prompt):
        answer = await client.chat.completions.create(
            model=live_server.engine.model_ids[index % 2], messages=[{"role": "user", "content": prompt}],
            max_tokens=8 + 5 * index, temperature=0)
        return answer.choices[0].message.content, answer.usage.completion_tokens

    async def run(concurrently: bool):
        client = AsyncOpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        if concurrently:
            return await asyncio.gather(*(ask(client, i, p) for i, p in enumerate(PROMPTS)))
        return [await ask(client, i, p) for i, p in enumerate(PROMPTS)]

    alone = asyncio.run(run(concurrently=False))
    live_server.engine.peak_batch_size = 0
    together = asyncio.run(run(concurrently=True))
    assert live_server.engine.peak_batch_size >= 4  # they really were generated together
    assert together == alone
    assert all(0 < tokens <= 8 + 5 * i for i, (_, tokens) in enumerate(together))  # each its own max_tokens
    assert len({text for text, _ in together}) > 1  # independent answers, not one answer copied


def test_seeded_sampling_is_reproducible_under_concurrency(live_server):
    async def ask(client, seed):
        answer = await client.chat.completions.create(messages=QUESTION, model=live_server.engine.model_ids[0],
                                                      max_tokens=12, temperature=1.0, seed=seed)
        return answer.choices[0].message.content

    async def run():
        client = AsyncOpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        alone = [await ask(client, seed) for seed in (1, 2)]
        together = await asyncio.gather(*(ask(client, seed) for seed in (1, 2, 1, 2)))
        return alone, together

    alone, together = asyncio.run(run())
    assert together == alone + alone
    assert alone[0] != alone[1]


def test_client_disconnect_mid_stream_frees_the_slot(live_server):
    engine = live_server.engine
    before = engine.counts["cancelled"]
    body = {"messages": QUESTION, "max_tokens": 900, "stream": True, "temperature": 0}
    with httpx.stream("POST", live_server.url + "/v1/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]  # a few chunks: the request is in the batch
    assert any('"content"' in line for line in received)
    # bounded wait for the worker's next step
    wait_until(lambda: engine.counts["cancelled"] == before + 1 and engine.active_batch_size == 0, timeout_s=30, step_s=0.1)
    assert engine.counts["cancelled"] == before + 1
    assert engine.active_batch_size == 0
    state = httpx.get(live_server.url + "/readyz").json()
    assert state["active"] == 0 and state["ready"] is True


def test_healthz_answers_while_eight_generations_run(live_server):
    engine = live_server.engine
    body = {"messages": QUESTION, "max_tokens": 600, "stream": True, "temperature": 0}

    async def run():
        async with httpx.AsyncClient(base_url=live_server.url, timeout=60) as http:
            async def one_stream(stop: asyncio.Event):
                async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                    async for _ in response.aiter_lines():
                        if stop.is_set():
                            return

            stop = asyncio.Event()
            streams = [asyncio.create_task(one_stream(stop)) for _ in range(8)]
            for _ in range(300):  # bounded wait until all 8 are in the batch
                if engine.active_batch_size == 8:
                    break
                await asyncio.sleep(0.05)
            assert engine.active_batch_size == 8
            timings = []
            with httpx.Client(base_url=live_server.url) as probe:
                for _ in range(20):
                    start = time.perf_counter()
                    assert probe.get("/healthz").status_code == 200
                    timings.append(time.perf_counter() - start)
            busy = engine.active_batch_size
            stop.set()
            await asyncio.gather(*streams)
            return sorted(timings), busy

    timings, busy = asyncio.run(run())
    # No wall-clock bound (machines are noisy): the 20 probes all answered while the eight 600-token generations
    # were still running, so /healthz does not queue behind generation. The timings are printed for a reader.
    assert busy == 8, "the generations were still running while /healthz was probed"
    median = timings[len(timings) // 2]
    print(f"/healthz under 8 generations: median {median * 1000:.1f} ms, max {timings[-1] * 1000:.1f} ms")


# -- malformed requests: each gets its OpenAI-style 4xx ---------------------------------------------------

def _post(live_server, body, raw: bytes | None = None):
    if raw is not None:
        return httpx.post(live_server.url + "/v1/chat/completions", content=raw,
                          headers={"Content-Type": "application/json"}, timeout=30)
    return httpx.post(live_server.url + "/v1/chat/completions", json=body, timeout=30)


MSG = [{"role": "user", "content": "你好"}]
BAD_REQUESTS = {
    "invalid json": (None, b'{"messages": [', 400, "invalid_json", None),
    "body not an object": ([1, 2], None, 400, "invalid_value", None),
    "messages not a list": ({"messages": "你好"}, None, 400, "invalid_value", "messages"),
    "max_tokens as string": ({"messages": MSG, "max_tokens": "5"}, None, 400, "invalid_value", "max_tokens"),
    "temperature as string": ({"messages": MSG, "temperature": "hot"}, None, 400, "invalid_value", "temperature"),
    "stream as int": ({"messages": MSG, "stream": 1}, None, 400, "invalid_value", "stream"),
    "empty messages": ({"messages": []}, None, 400, "invalid_value", "messages"),
    "missing messages": ({"model": "x"}, None, 400, "invalid_value", "messages"),
    "unknown role": ({"messages": [{"role": "wizard", "content": "hi"}]}, None, 400, "invalid_value", "messages[0].role"),
    "content not text": ({"messages": [{"role": "user", "content": 5}]}, None, 400, "invalid_value", "messages[0].content"),
    "max_tokens zero": ({"messages": MSG, "max_tokens": 0}, None, 400, "invalid_value", "max_tokens"),
    "max_tokens huge": ({"messages": MSG, "max_tokens": 10**7}, None, 400, "invalid_value", "max_tokens"),
    "temperature too high": ({"messages": MSG, "temperature": 5}, None, 400, "invalid_value", "temperature"),
    "n above the batch limit": ({"messages": MSG, "n": 9}, None, 400, "invalid_value", "n"),
    "unknown model": ({"messages": MSG, "model": "gpt-4"}, None, 404, "model_not_found", "model"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_malformed_request_gets_its_4xx(live_server, case):
    body, raw, status, code, param = BAD_REQUESTS[case]
    response = _post(live_server, body, raw)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["message"]
    assert error["type"] in ("invalid_request_error", "not_found_error")
    if param is not None:
        assert error["param"] == param


def test_prompt_longer_than_the_context_says_by_how_much(live_server, chat_format):
    messages = [{"role": "user", "content": "劳动合同纠纷" * 400}]
    prompt_tokens = len(chat_format.encode_prompt(messages))
    limit = live_server.engine.context_length(live_server.engine.model_ids[0])
    response = _post(live_server, {"messages": messages, "max_tokens": 10})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert f"by {prompt_tokens + 10 - limit} tokens" in error["message"]
    assert f"{prompt_tokens} in the messages" in error["message"]


def test_openai_client_raises_its_own_errors(client):
    with pytest.raises(BadRequestError) as bad:
        client.chat.completions.create(model=client.models.list().data[0].id, messages=[], max_tokens=4)
    assert bad.value.status_code == 400
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=QUESTION, max_tokens=4)


def test_unknown_path_is_an_openai_style_404(live_server):
    response = httpx.get(live_server.url + "/v1/nothing")
    assert response.status_code == 404
    assert json.loads(response.text)["error"]["type"] == "not_found_error"
