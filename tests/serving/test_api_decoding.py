"""The server decodes as eval does (lawtune.modeling.decoding): same answers, same repetition stop, which
the API reports as finish_reason "stop" + stop_reason "repetition"; request penalties are honoured.

    .venv/bin/pytest tests/serving/test_api_decoding.py -q
"""

from __future__ import annotations

import json

import httpx
import pytest

from lawtune.modeling.decoding import DecodingPolicy

QUESTIONS = ["公司拖欠工资怎么办？", "离婚需要什么材料？", "交通事故赔偿怎么算？", "借钱不还怎么起诉？", "劳动合同到期不续签有补偿吗？",
             "在在在在", "房屋租赁合同纠纷", "工伤怎么认定？"]
MAX_TOKENS = 32  # the live server's default_max_tokens
# the run's random base model: it loops within 32 tokens on some of these (the 6-step adapter needs more)


@pytest.fixture(scope="module")
def eval_answers(tiny_run_dir):
    """What eval's batched `generate` (model.generate + the policy's hooks) answers with the run's base model."""
    from lawtune.evaluation.generation import GenerationSettings, generate
    from lawtune.modeling.loading import load_model

    loaded = load_model(str(tiny_run_dir), base_only=True)

    def answers(policy: DecodingPolicy):
        conversations = [[{"role": "user", "content": q}] for q in QUESTIONS]
        return generate(loaded, conversations, GenerationSettings(max_new_tokens=MAX_TOKENS, decoding=policy),
                        show_progress=False)
    return answers


def _body(server, question: str, **extra) -> dict:
    base = server.engine.model_ids[1]  # RUN:base
    return {"model": base, "messages": [{"role": "user", "content": question}], "max_tokens": MAX_TOKENS,
            "temperature": 0, **extra}


def _ask(server, question: str, **extra) -> dict:
    body = _body(server, question, **extra)
    response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def _api_reason(generation) -> tuple[str, str | None]:
    return ("stop", "repetition") if generation.finish_reason == "repetition" else (generation.finish_reason, None)


def test_server_answers_and_repetition_stops_equal_eval(live_server, eval_answers):
    expected = eval_answers(DecodingPolicy())  # the server's defaults are the policy's defaults
    assert any(g.finish_reason == "repetition" for g in expected), "no tiny-model answer looped: pick other questions"
    for question, generation in zip(QUESTIONS, expected):
        choice = _ask(live_server, question)
        assert choice["message"]["content"].strip() == generation.text
        assert (choice["finish_reason"], choice["stop_reason"]) == _api_reason(generation)


def test_stream_reports_stop_reason_repetition_on_the_last_chunk(live_server, eval_answers):
    question, generation = next((q, g) for q, g in zip(QUESTIONS, eval_answers(DecodingPolicy()))
                                if g.finish_reason == "repetition")
    body = _body(live_server, question, stream=True)
    with httpx.stream("POST", live_server.url + "/v1/chat/completions", json=body, timeout=120) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    finals = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert [(c["finish_reason"], c.get("stop_reason")) for c in finals] == [("stop", "repetition")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip().startswith(generation.text)  # a stream may keep a little more: text shown stays shown


def test_request_penalties_are_honoured_and_equal_eval(live_server, eval_answers):
    policy = DecodingPolicy(repetition_penalty=1.5, frequency_penalty=0.5, presence_penalty=0.5)
    expected = eval_answers(policy)
    plain = eval_answers(DecodingPolicy())
    assert [g.text for g in expected] != [g.text for g in plain]  # the penalties change answers
    for question, generation in zip(QUESTIONS, expected):
        choice = _ask(live_server, question, repetition_penalty=1.5, frequency_penalty=0.5, presence_penalty=0.5)
        assert choice["message"]["content"].strip() == generation.text
        assert (choice["finish_reason"], choice["stop_reason"]) == _api_reason(generation)


def test_out_of_range_penalty_is_a_400_naming_the_field(live_server):
    response = httpx.post(live_server.url + "/v1/chat/completions", timeout=30,
                          json={"messages": [{"role": "user", "content": "hi"}], "frequency_penalty": 2.5})
    assert response.status_code == 400 and "frequency_penalty" in response.text
