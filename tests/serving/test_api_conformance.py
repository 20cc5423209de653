"""Conformance of the OpenAI-compatible API (docs/serving.md "Conformance"), driven by the official `openai`
SDK against real servers on loopback: every field honoured or refused with a 400 naming it, null fields,
logprobs, n > 1, response_format (.parse with a Pydantic model), completions, models.retrieve, request ids,
the catch-all error envelope, CORS, SSE keep-alives while queued, and several adapters on one base.

    .venv/bin/pytest tests/serving/test_api_conformance.py -q
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Literal

import httpx
import pytest
from openai import BadRequestError, InternalServerError, NotFoundError
from pydantic import BaseModel

from live_server import openai_client, start_server

QUESTION = [{"role": "user", "content": "公司拖欠工资怎么办？"}]


def _post(server, path: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=headers, timeout=60)


# ---- fields: honoured or refused -------------------------------------------------------------------------


def test_null_fields_mean_the_defaults(live_server):
    plain = _post(live_server, "/v1/chat/completions", {"messages": QUESTION, "max_tokens": 6, "temperature": 0})
    nulls = {"temperature": None, "top_p": None, "n": None, "stream": None, "stop": None, "seed": None,
             "top_k": None, "min_p": None, "logprobs": None, "top_logprobs": None, "response_format": None,
             "tools": None, "tool_choice": None, "user": None, "stream_options": None, "logit_bias": None,
             "frequency_penalty": None, "presence_penalty": None, "max_completion_tokens": None}
    answer = _post(live_server, "/v1/chat/completions", {"messages": QUESTION, "max_tokens": 6, **nulls,
                                                         "temperature": 0})
    assert plain.status_code == answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"] == plain.json()["choices"][0]["message"]
    # null temperature is 1 (sampling), not an error
    assert _post(live_server, "/v1/chat/completions", {"messages": QUESTION, "max_tokens": 3, **nulls}).status_code == 200


REFUSED = {
    "a malformed tool": ({"tools": [{"type": "function", "function": {"name": "f g"}}]}, "tools[0].function.name"),
    "tool_choice required without tools": ({"tool_choice": "required"}, "tool_choice"),
    "functions": ({"functions": [{"name": "f"}]}, "functions"),
    "store": ({"store": True}, "store"),
    "audio": ({"audio": {"voice": "alloy"}}, "audio"),
    "an unknown field": ({"frobnicate": 1}, "frobnicate"),
    "a message name": ({"messages": [{"role": "user", "content": "你好", "name": "bob"}]}, "messages[0].name"),
    "a tool message answering no call": ({"messages": [{"role": "tool", "content": "{}", "tool_call_id": "x"}]},
                                         "messages[0].tool_call_id"),
    "an image part": ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
                      "messages[0].content"),
    "top_logprobs without logprobs": ({"top_logprobs": 2}, "top_logprobs"),
    "top_logprobs above 20": ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    "n above 8": ({"n": 9}, "n"),
    "a logit_bias key that is no token id": ({"logit_bias": {"hello": 5}}, "logit_bias"),
    "a logit_bias token outside the vocabulary": ({"logit_bias": {"99999999": 5}}, "logit_bias"),
    "continuous_usage_stats": ({"stream": True, "stream_options": {"continuous_usage_stats": True}},
                               "stream_options.continuous_usage_stats"),
    "a broken JSON schema": ({"response_format": {"type": "json_schema",
                                                  "json_schema": {"name": "x", "schema": {"type": "wat"}}}},
                             "response_format"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_field_that_cannot_be_honoured_is_refused_naming_it(live_server, case):
    extra, param = REFUSED[case]
    body = {"messages": QUESTION, "max_tokens": 4, **extra}
    response = _post(live_server, "/v1/chat/completions", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"]
    assert error["code"] in ("invalid_value", "unsupported_parameter")


def test_what_clients_send_when_they_use_nothing_is_accepted(client):
    first = client.chat.completions.create(model="base", messages=QUESTION, max_tokens=4, temperature=0)
    # the SDK's own assistant message appended back (refusal/annotations/tool_calls null), [] tools, no-op fields
    messages = QUESTION + [first.choices[0].message.model_dump()] + [{"role": "developer", "content": "简短回答"},
                                                                     {"role": "user", "content": "还有呢？"}]
    again = client.chat.completions.create(model="base", messages=messages, max_tokens=4, temperature=0, tools=[],
                                           tool_choice="none", store=False, parallel_tool_calls=False,
                                           service_tier="auto", modalities=["text"], user="alice")
    assert again.choices[0].finish_reason in ("stop", "length")


def test_sampling_fields_are_honoured(client, live_server):
    def ask(**fields):
        return client.chat.completions.create(model="base", messages=QUESTION, max_tokens=12, seed=7,
                                              **fields).choices[0].message.content

    assert ask(temperature=1.0, extra_body={"top_k": 1}) == ask(temperature=0)  # top_k 1 is greedy
    assert ask(temperature=1.0, extra_body={"min_p": 1.0}) == ask(temperature=0)  # only the best token reaches it
    assert ask(temperature=1.0) == ask(temperature=1.0)  # seeded
    greedy = client.chat.completions.create(model="base", messages=QUESTION, max_tokens=1, temperature=0,
                                            logprobs=True, top_logprobs=2, extra_body={"repetition_penalty": 1.0})
    first, second = greedy.choices[0].logprobs.content[0].top_logprobs
    # a logit_bias of -100 on the greedy token makes the runner-up win
    vocab = live_server.engine._llguidance_tokenizer()  # the server's own token → bytes table
    token_id = next(i for i in range(live_server.engine.vocab_size()) if vocab.decode_bytes([i]) == bytes(first.bytes))
    biased = client.chat.completions.create(model="base", messages=QUESTION, max_tokens=1, temperature=0,
                                            logprobs=True, logit_bias={str(token_id): -100},
                                            extra_body={"repetition_penalty": 1.0})
    assert biased.choices[0].logprobs.content[0].token == second.token


def test_logprobs_list_every_generated_token_with_its_alternatives(client):
    answer = client.chat.completions.create(model="base", messages=QUESTION, max_tokens=8, temperature=0,
                                            logprobs=True, top_logprobs=3, extra_body={"repetition_penalty": 1.0})
    content = answer.choices[0].logprobs.content
    assert answer.choices[0].finish_reason == "length" and len(content) == answer.usage.completion_tokens == 8
    for entry in content:
        assert len(entry.top_logprobs) == 3 and entry.logprob <= 0
        values = [top.logprob for top in entry.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert entry.token == entry.top_logprobs[0].token and entry.logprob == values[0]  # greedy: the best one
    text = b"".join(bytes(entry.bytes) for entry in content).decode("utf-8", "replace")
    assert text.startswith(answer.choices[0].message.content.rstrip("\ufffd"))
    streamed = client.chat.completions.create(model="base", messages=QUESTION, max_tokens=8, temperature=0,
                                              logprobs=True, top_logprobs=3, stream=True,
                                              extra_body={"repetition_penalty": 1.0})
    tokens = [e.token for chunk in streamed if chunk.choices and chunk.choices[0].logprobs
              for e in chunk.choices[0].logprobs.content or []]
    assert tokens == [entry.token for entry in content]


def test_n_choices_are_generated_side_by_side(client, live_server):
    live_server.engine.peak_batch_size = 0
    answer = client.chat.completions.create(model="base", messages=QUESTION, max_tokens=10, temperature=1.0, seed=3,
                                            n=3)
    assert [choice.index for choice in answer.choices] == [0, 1, 2]
    assert live_server.engine.peak_batch_size >= 3
    texts = [choice.message.content for choice in answer.choices]
    assert len(set(texts)) > 1
    assert answer.usage.completion_tokens <= 30 and answer.usage.prompt_tokens < answer.usage.total_tokens
    # choice i is seeded with seed + i: the same request gives the same choices, streamed or not
    chunks = list(client.chat.completions.create(model="base", messages=QUESTION, max_tokens=10, temperature=1.0,
                                                 seed=3, n=3, stream=True, stream_options={"include_usage": True}))
    streamed = ["", "", ""]
    for chunk in chunks:
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert streamed == texts and chunks[-1].usage == answer.usage


class Verdict(BaseModel):
    answer: Literal["是", "否"]
    article: Literal[1079, 1087]


def test_parse_with_a_pydantic_model_gets_an_instance(client):
    completion = client.chat.completions.parse(model="base", messages=QUESTION, response_format=Verdict,
                                               max_tokens=40, temperature=1.0, seed=1)
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Verdict), completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    as_object = client.chat.completions.create(model="base", messages=QUESTION, max_tokens=6, temperature=0,
                                               response_format={"type": "json_object"})
    assert as_object.choices[0].message.content.startswith("{")


# ---- completions and models -------------------------------------------------------------------------------


def test_completions_answer_a_prompt_with_the_same_engine(client, chat_format):
    prompt = "劳动合同的期限"
    completion = client.completions.create(model="base", prompt=prompt, max_tokens=8, temperature=0)
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.usage.prompt_tokens == len(chat_format.tokenizer(prompt)["input_ids"])
    assert completion.usage.completion_tokens <= 8 and completion.choices[0].text
    echoed = client.completions.create(model="base", prompt=prompt, max_tokens=8, temperature=0, echo=True,
                                       logprobs=None)
    assert echoed.choices[0].text == prompt + completion.choices[0].text
    with_logprobs = client.completions.create(model="base", prompt=prompt, max_tokens=4, temperature=0, logprobs=2,
                                              extra_body={"repetition_penalty": 1.0})
    logprobs = with_logprobs.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 4
    streamed = "".join(chunk.choices[0].text for chunk in client.completions.create(
        model="base", prompt=prompt, max_tokens=8, temperature=0, stream=True) if chunk.choices)
    assert streamed == completion.choices[0].text
    ids = chat_format.tokenizer(prompt)["input_ids"]
    from_ids = client.completions.create(model="base", prompt=ids, max_tokens=8, temperature=0)
    assert from_ids.choices[0].text == completion.choices[0].text
    with pytest.raises(BadRequestError) as refused:
        client.completions.create(model="base", prompt=prompt, max_tokens=4, suffix="结尾")
    assert refused.value.body["param"] == "suffix"


def test_models_retrieve_by_id_and_alias(client, tiny_run_dir):
    main = client.models.retrieve(tiny_run_dir.name)
    assert main.id == tiny_run_dir.name and main.model_extra["parent"] == f"{tiny_run_dir.name}:base"
    assert main.model_extra["max_model_len"] > 0
    base = client.models.retrieve(f"{tiny_run_dir.name}:base")
    assert base.model_extra["parent"] is None
    assert client.models.retrieve("base").model_extra["root"] == base.id
    with pytest.raises(NotFoundError):
        client.models.retrieve("gpt-4")


# ---- request ids, error envelope, retries ------------------------------------------------------------------


def test_request_id_round_trip(client):
    raw = client.chat.completions.with_raw_response.create(model="base", messages=QUESTION, max_tokens=2,
                                                           extra_headers={"X-Request-Id": "ticket-42"})
    assert raw.headers["x-request-id"] == "ticket-42"
    assert raw.parse().id == "chatcmpl-ticket-42"
    made = client.chat.completions.with_raw_response.create(model="base", messages=QUESTION, max_tokens=2)
    assert len(made.headers["x-request-id"]) == 32 and made.parse().id == "chatcmpl-" + made.headers["x-request-id"]
    with pytest.raises(BadRequestError) as refused:  # errors carry it too
        client.chat.completions.create(model="base", messages=[], extra_headers={"X-Request-Id": "bad-1"})
    assert refused.value.request_id == "bad-1"


def test_an_unexpected_failure_is_a_500_envelope_the_sdk_does_not_retry(live_server, monkeypatch):
    engine = live_server.engine
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("a bug")

    monkeypatch.setattr(engine, "prompt", broken)
    retrying = openai_client(live_server, max_retries=2, timeout=30)
    with pytest.raises(InternalServerError) as failed:
        retrying.chat.completions.create(model="base", messages=QUESTION, max_tokens=2)
    error = failed.value
    assert error.status_code == 500 and error.body["code"] == "internal_error"
    assert error.request_id in error.body["message"]
    assert error.response.headers["x-should-retry"] == "false" and len(calls) == 1  # not retried
    monkeypatch.undo()
    assert retrying.chat.completions.create(model="base", messages=QUESTION, max_tokens=2).choices


# ---- a second server: keys, CORS, one slot, keep-alives, two adapters on one base --------------------------


def _second_run(tiny_run_dir: Path, folder: Path) -> Path:
    """A copy of the tiny run whose adapter weights are flipped: another adapter on the same base."""
    from safetensors.torch import load_file, save_file

    second = folder / "second"
    shutil.copytree(tiny_run_dir, second, ignore=shutil.ignore_patterns("checkpoint-*", "tensorboard"))
    for name in ("adapter", "best"):
        weights = second / name / "adapter_model.safetensors"
        if weights.is_file():
            tensors = load_file(weights)
            save_file({key: -value * 3 if "lora_B" in key else value for key, value in tensors.items()}, weights)
    return second


ADMIN = "lt-admin-test-key"


@pytest.fixture(scope="module")
def multi(tiny_run_dir, tmp_path_factory):
    from lawtune.serving.gateway.settings import GatewaySettings
    from lawtune.serving.settings import ServeSettings

    second = _second_run(tiny_run_dir, tmp_path_factory.mktemp("second-run"))
    settings = ServeSettings(model=str(tiny_run_dir), dtype="float32", lora_modules={"second": str(second)},
                             served_model_name=["legal", "legal-latest"], max_batch_size=1, default_max_tokens=16,
                             cors_origins=["http://chat.example"], sse_keepalive_s=0.05,
                             gateway=GatewaySettings(admin_key=ADMIN, requests_per_minute=None, tokens_per_minute=None,
                                                     queue_size=4))
    live = start_server(settings)
    yield live
    live.stop()


def test_two_adapters_and_the_base_share_one_copy_of_the_base_weights(multi, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    client = openai_client(multi, api_key=ADMIN)
    ids = [card.id for card in client.models.list().data]
    assert ids == ["legal", "second", "legal:base", "legal-latest", "base"]
    answers = {model: client.chat.completions.create(model=model, messages=QUESTION, max_tokens=12, temperature=0,
                                                     ).choices[0].message.content for model in ids}
    assert len({answers["legal"], answers["second"], answers["legal:base"]}) == 3
    assert answers["legal-latest"] == answers["legal"] and answers["base"] == answers["legal:base"]
    # memory: every parameter tensor the engine holds, counted once by storage
    engine = multi.engine
    storages = {}
    for parameter in engine.model.parameters():
        storages[parameter.untyped_storage().data_ptr()] = parameter.untyped_storage().nbytes()
    held = sum(storages.values())
    base = sum(p.numel() * p.element_size() for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters())
    lora = sum(p.numel() * p.element_size() for name, p in engine.model.named_parameters() if "lora_" in name)
    head = engine.model.get_output_embeddings().weight_t
    extra_head = head.numel() * head.element_size()  # batch.TransposedHead: the output head's transposed copy
    print(f"engine parameters {held} B = base {base} + adapters {lora} + transposed head {extra_head}")
    assert held == base + lora + extra_head  # one base, not one per served model
    assert lora > 0 and sum(1 for name, _ in engine.model.named_parameters() if "lora_A.adapter1" in name) > 0


def test_cors_preflight_needs_no_key_and_answers_carry_the_origin(multi):
    preflight = httpx.options(multi.url + "/v1/chat/completions", headers={
        "Origin": "http://chat.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://chat.example"
    other = httpx.options(multi.url + "/v1/chat/completions", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers
    answer = httpx.get(multi.url + "/v1/models", headers={"Origin": "http://chat.example",
                                                          "Authorization": f"Bearer {ADMIN}"})
    assert answer.headers["access-control-allow-origin"] == "http://chat.example"
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    assert httpx.get(multi.url + "/v1/models").status_code == 401  # keys still guard the API


def test_a_queued_stream_gets_keepalives_then_an_in_stream_error_then_done(multi, tiny_run_dir):
    """One slot: while a long answer holds it, a second stream is answered at once (200) and gets `: ping`
    comments while it waits; its request then fails in the engine (a token id outside the vocabulary),
    which arrives as an error event followed by [DONE]."""
    from transformers import AutoTokenizer

    headers = {"Authorization": f"Bearer {ADMIN}"}
    # the holder must really hold the slot: sampled (a greedy random model loops and the repetition stop
    # ends it early) and never allowed to stop, so only max_tokens or the release ends it
    tokenizer = AutoTokenizer.from_pretrained(tiny_run_dir / "tokenizer")
    stops = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")} - {None}
    long_body = {"model": "legal:base", "messages": QUESTION, "max_tokens": 900, "stream": True, "temperature": 1.0,
                 "seed": 0, "logit_bias": {str(i): -100 for i in stops}}
    bad_body = {"model": "legal:base", "messages": QUESTION, "max_tokens": 4, "stream": True,
                "logit_bias": {"99999999": 1}}
    holding, released = threading.Event(), threading.Event()

    def hold_the_slot():
        with httpx.stream("POST", multi.url + "/v1/chat/completions", json=long_body, headers=headers,
                          timeout=60) as response:
            for _ in response.iter_lines():
                holding.set()
                if released.is_set():
                    return

    holder = threading.Thread(target=hold_the_slot, daemon=True)
    holder.start()
    assert holding.wait(30)
    lines = []
    try:
        with httpx.stream("POST", multi.url + "/v1/chat/completions", json=bad_body, headers=headers,
                          timeout=60) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                if sum(seen.startswith(":") for seen in lines) >= 2:
                    released.set()  # keep-alives were seen while waiting: let the long answer go
    finally:
        released.set()
        holder.join(30)
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    assert any(line.startswith(": ping") for line in lines[:first_data]), lines[:5]
    data = [line for line in lines if line.startswith("data:")]
    assert data[-1] == "data: [DONE]"
    error = json.loads(data[-2][5:])["error"]
    assert error["param"] == "logit_bias" and error["code"] == "invalid_value"
