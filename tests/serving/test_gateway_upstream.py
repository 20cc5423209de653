"""Upstream mode: the gateway in front of a second lawtune server (a subprocess on loopback), including an
upstream that dies: clients get 503 (never 500), the breaker opens, goes half-open after its cool-down,
and closes again once the upstream is back.

    .venv/bin/pytest tests/serving/test_gateway_upstream.py -q
"""

from __future__ import annotations

import json

import httpx
import pytest
from gateway_fixtures import ServerProcess, metric_value
from live_server import start_server, wait_until

from lawtune.serving.gateway.settings import GatewaySettings

QUESTION = [{"role": "user", "content": "租房押金不退怎么办？"}]
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def upstream(tiny_run_dir, tmp_path_factory):
    server = ServerProcess([str(tiny_run_dir), "--open", "--no-base", "--max-batch-size", "4"],
                           tmp_path_factory.mktemp("upstream") / "upstream.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(upstream, tiny_run_dir):
    from lawtune.serving.settings import ServeSettings

    settings = ServeSettings(model=str(tiny_run_dir), dtype="float32", upstream=upstream.url, default_max_tokens=8,
                             gateway=GatewaySettings(open_access=True, breaker_failures=2, breaker_cooldown_s=1.0))
    server = start_server(settings)
    yield server
    server.stop()


def ask(server, **body) -> httpx.Response:
    return httpx.post(server.url + CHAT, json={"messages": QUESTION, "max_tokens": 5, **body}, timeout=60)


def test_every_field_is_forwarded_to_the_upstream(front, upstream):
    """n, sampling, logprobs, logit_bias, response_format and completions reach the upstream: the gateway's
    answer equals the upstream's own answer to the same request."""
    fields = {"n": 2, "temperature": 1.0, "seed": 5, "top_k": 20, "min_p": 0.01, "top_p": 0.9, "logprobs": True,
              "top_logprobs": 2, "logit_bias": {"5": -100}, "repetition_penalty": 1.1, "max_tokens": 6}
    direct = httpx.post(upstream.url + CHAT, json={"messages": QUESTION, **fields}, timeout=60).json()
    proxied = ask(front, **fields).json()
    assert [c["message"]["content"] for c in proxied["choices"]] == [c["message"]["content"] for c in direct["choices"]]
    assert proxied["choices"][1]["logprobs"] == direct["choices"][1]["logprobs"]
    assert proxied["usage"] == direct["usage"]
    schema = {"type": "json_schema", "json_schema": {"name": "v", "schema": {
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}}}
    shaped = ask(front, response_format=schema, max_tokens=20, temperature=0).json()
    assert json.loads(shaped["choices"][0]["message"]["content"])["ok"] in (True, False)
    completion = {"prompt": "劳动合同", "max_tokens": 5, "temperature": 0, "logprobs": 1}
    direct = httpx.post(upstream.url + "/v1/completions", json=completion, timeout=60).json()
    proxied = httpx.post(front.url + "/v1/completions", json=completion, timeout=60).json()
    assert proxied["choices"][0]["text"] == direct["choices"][0]["text"]
    assert proxied["choices"][0]["logprobs"]["tokens"] == direct["choices"][0]["logprobs"]["tokens"]


def test_tools_pass_through_unchanged_and_the_upstreams_calls_are_relayed(front, upstream):
    """tools / tool_choice / parallel_tool_calls reach the upstream as sent; its tool calls (streamed deltas)
    come back to the client whole, non-streamed and streamed (assembled by the openai SDK)."""
    from openai import OpenAI

    tool = {"type": "function", "function": {"name": "severance_pay", "parameters": {"type": "object", "properties": {
        "monthly_wage": {"type": "integer", "minimum": 1, "maximum": 99999}}, "required": ["monthly_wage"]}}}
    fields = {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "severance_pay"}},
              "parallel_tool_calls": False, "seed": 3, "temperature": 1.0, "max_tokens": 120}
    direct = httpx.post(upstream.url + CHAT, json={"messages": QUESTION, **fields}, timeout=60).json()["choices"][0]
    proxied = ask(front, **fields).json()["choices"][0]
    assert proxied["finish_reason"] == direct["finish_reason"] == "tool_calls"
    assert proxied["message"]["content"] is None
    [call], [want] = proxied["message"]["tool_calls"], direct["message"]["tool_calls"]
    assert call["function"] == want["function"] and call["id"].startswith("call_")
    client = OpenAI(base_url=front.url + "/v1", api_key="unused", max_retries=0)
    with client.chat.completions.stream(model=None, messages=QUESTION, **fields) as stream:
        streamed = stream.get_final_completion().choices[0]
    assert streamed.finish_reason == "tool_calls"
    assert streamed.message.tool_calls[0].function.arguments == want["function"]["arguments"]
    refused = ask(front, tools=[tool], tool_choice={"type": "function", "function": {"name": "nope"}})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tool_choice"


def test_hostile_input_is_refused_before_the_upstream_and_never_opens_the_breaker(front, upstream):
    """Issue 25 item 11: a client's JSON schema is checked here (llguidance) before vLLM compiles it; bad
    logit_bias keys, stop strings and token ids are 400s of the gateway's own schema."""
    before = metric_value(httpx.get(upstream.url + "/metrics", timeout=10).text, "lawtune_requests_total")
    broken = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/nowhere"}}}
    for body in ({"response_format": broken}, {"logit_bias": {"²": 1}}, {"stop": "法" * 600}):
        for _ in range(3):  # more than breaker_failures
            response = ask(front, **body)
            assert response.status_code == 400, response.text
    response = httpx.post(front.url + "/v1/completions", json={"prompt": [10**12], "max_tokens": 2}, timeout=30)
    assert response.status_code == 400, response.text
    assert front.gateway.breaker.state == "closed" and front.gateway.breaker.consecutive_failures == 0
    assert metric_value(httpx.get(upstream.url + "/metrics", timeout=10).text, "lawtune_requests_total") == before
    assert ask(front).status_code == 200


def test_proxied_answers_match_the_upstream(front, upstream, tiny_run_dir):
    models = httpx.get(front.url + "/v1/models", timeout=10).json()["data"]
    assert [m["id"] for m in models] == [tiny_run_dir.name]
    direct = httpx.post(upstream.url + CHAT, json={"messages": QUESTION, "max_tokens": 5, "temperature": 0}, timeout=60)
    proxied = ask(front, temperature=0)
    assert proxied.status_code == 200
    assert proxied.json()["choices"][0]["message"]["content"] == direct.json()["choices"][0]["message"]["content"]
    # the run folder gives the gateway the same tokenizer: its count equals the upstream's usage
    assert proxied.json()["usage"] == direct.json()["usage"]
    body = {"messages": QUESTION, "max_tokens": 5, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", front.url + CHAT, json=body, timeout=60) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    streamed = "".join(choice["delta"].get("content", "") for line in lines[:-1]
                       for choice in json.loads(line[5:])["choices"])
    assert streamed == direct.json()["choices"][0]["message"]["content"]
    assert json.loads(lines[-2][5:])["usage"] == direct.json()["usage"]
    upstream_error = ask(front, model="no-such-model")  # the gateway's own validation answers first
    assert upstream_error.status_code == 404


def test_dead_upstream_trips_the_breaker_and_recovery_closes_it(front, upstream):
    assert ask(front).status_code == 200
    upstream.kill()  # SIGKILL: connections refused from now on
    failures = [ask(front) for _ in range(2)]
    assert [r.status_code for r in failures] == [503, 503]  # never 500
    assert all(r.json()["error"]["code"] == "engine_error" for r in failures)
    degraded = ask(front)  # the breaker is open: answered at once, without trying the upstream
    assert degraded.status_code == 503 and degraded.json()["error"]["code"] == "service_degraded"
    assert int(degraded.headers["Retry-After"]) >= 1
    ready = httpx.get(front.url + "/readyz", timeout=10).json()
    assert ready["status"] == "degraded" and ready["breaker"] == "open" and ready["notice"]
    text = httpx.get(front.url + "/metrics", timeout=10).text
    assert metric_value(text, "lawtune_breaker_state") == 2
    assert metric_value(text, "lawtune_requests_total", status="503", reason="breaker_open") >= 1

    # after the cool-down one probe may go: half-open
    assert wait_until(lambda: httpx.get(front.url + "/readyz", timeout=10).json()["breaker"] == "half_open",
                      timeout_s=10)
    probe = ask(front)  # the upstream is still down: the probe fails and the breaker opens again
    assert probe.status_code == 503 and front.gateway.breaker.state == "open"

    upstream.start()  # back on the same port
    recovered = wait_until(lambda: ask(front).status_code == 200, timeout_s=60, step_s=0.3)
    assert recovered and front.gateway.breaker.state == "closed"
    assert front.gateway.breaker.trips >= 2
    assert httpx.get(front.url + "/readyz", timeout=10).json()["status"] == "ready"
