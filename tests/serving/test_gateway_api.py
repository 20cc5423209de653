"""The gateway in the real app, over real HTTP on loopback (tiny run): keys and their reload, 401/403,
per-key 429 with its headers, 413, the kill switch by API and by flag file (in-flight answers finish),
/readyz and /admin/status, /metrics, and fuzzed bodies that must never get a 5xx.

    .venv/bin/pytest tests/serving/test_gateway_api.py -q
"""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest
from gateway_fixtures import metric_value
from live_server import start_server
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from lawtune.serving.gateway.keys import add_key
from lawtune.serving.gateway.settings import GatewaySettings

ADMIN = "lt-admin-test-key-0123456789"
QUESTION = [{"role": "user", "content": "公司拖欠工资怎么办？"}]
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def keyed(tiny_run_dir, tmp_path_factory):
    """A keyed server: 'alice' (roomy limits), 'tight' (2 requests/min), 'few' (60 tokens/min), a pause file."""
    from lawtune.serving.settings import ServeSettings

    root = tmp_path_factory.mktemp("gateway")
    keys_file = root / "keys.yaml"
    keys = {"alice": add_key(keys_file, "alice"), "tight": add_key(keys_file, "tight", requests_per_minute=2),
            "few": add_key(keys_file, "few", tokens_per_minute=60)}
    gateway = GatewaySettings(keys_file=keys_file, admin_key=ADMIN, requests_per_minute=10_000,
                              tokens_per_minute=10_000_000, max_body_bytes=4096, pause_file=root / "paused",
                              pause_notice="系统维护中，请稍后再试。")
    server = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=4, default_max_tokens=8,
                                           serve_base=False, gateway=gateway))
    server.keys, server.keys_file, server.pause_file = keys, keys_file, root / "paused"
    yield server
    server.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ask(server, key: str | None, **body) -> httpx.Response:
    payload = {"messages": QUESTION, "max_tokens": 4, **body}
    return httpx.post(server.url + CHAT, json=payload, headers=auth(key) if key else {}, timeout=60)


def test_keys_are_required_and_checked(keyed):
    missing = ask(keyed, None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert ask(keyed, "lt-wrong-key-000000000000").status_code == 401
    assert httpx.get(keyed.url + "/v1/models", timeout=10).status_code == 401
    ok = ask(keyed, keyed.keys["alice"])
    assert ok.status_code == 200 and 1 <= ok.json()["usage"]["completion_tokens"] <= 4
    assert ok.headers["X-RateLimit-Limit-Requests"] == "10000"
    assert httpx.get(keyed.url + "/v1/models", headers=auth(keyed.keys["alice"]), timeout=10).status_code == 200
    assert httpx.get(keyed.url + "/healthz", timeout=10).status_code == 200  # health stays public


def test_admin_endpoints_need_the_admin_key(keyed):
    assert httpx.get(keyed.url + "/admin/status", timeout=10).status_code == 401
    refused = httpx.get(keyed.url + "/admin/status", headers=auth(keyed.keys["alice"]), timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_key_required"
    status = httpx.get(keyed.url + "/admin/status", headers=auth(ADMIN), timeout=10).json()
    assert status["status"] == "ready" and status["breaker"]["state"] == "closed"
    assert status["queue"]["max_concurrency"] == 4


def test_a_new_key_works_without_restart(keyed):
    new = add_key(keyed.keys_file, f"carol-{time.time_ns()}")
    os.utime(keyed.keys_file, ns=(time.time_ns(), time.time_ns() + 5_000_000))  # mtime surely moved
    assert ask(keyed, new).status_code == 200


def test_requests_per_minute_limit_gives_429_with_headers(keyed):
    statuses = [ask(keyed, keyed.keys["tight"]) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    refused = statuses[2]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded" and "tight" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "2" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert 0 <= int(refused.headers["X-RateLimit-Reset"]) <= 60
    assert ask(keyed, keyed.keys["alice"]).status_code == 200  # one key's limit is not another's


def test_tokens_per_minute_charges_prompt_plus_max_tokens(keyed):
    too_big = ask(keyed, keyed.keys["few"], max_tokens=100)  # alone over the 60-token budget
    # waiting cannot help, so not a 429 the openai SDK would retry: a 400 naming max_tokens, told not to retry
    assert too_big.status_code == 400 and "lower max_tokens" in too_big.json()["error"]["message"]
    assert too_big.json()["error"]["param"] == "max_tokens" and too_big.headers["x-should-retry"] == "false"
    first = ask(keyed, keyed.keys["few"], max_tokens=4)
    assert first.status_code == 200
    prompt = first.json()["usage"]["prompt_tokens"]
    assert int(first.headers["X-RateLimit-Remaining-Tokens"]) == 60 - (prompt + 4)  # charged before generating
    used = first.json()["usage"]["total_tokens"]  # settled after: what the answer really used
    second = ask(keyed, keyed.keys["few"], max_tokens=60 - used)
    assert second.status_code == 429 and second.headers["X-RateLimit-Limit"] == "60"


def test_oversized_bodies_get_413(keyed):
    big = [{"role": "user", "content": "劳动合同" * 2000}]
    response = ask(keyed, keyed.keys["alice"], messages=big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit is enforced while reading
        body = json.dumps({"messages": big, "max_tokens": 2}).encode()
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    chunked = httpx.post(keyed.url + CHAT, content=chunks(), headers=auth(keyed.keys["alice"]), timeout=30)
    assert chunked.status_code == 413


def test_pause_by_api_lets_in_flight_answers_finish(keyed):
    alice, admin = auth(keyed.keys["alice"]), auth(ADMIN)
    body = {"messages": QUESTION, "max_tokens": 60, "stream": True}
    with httpx.stream("POST", keyed.url + CHAT, json=body, headers=alice, timeout=60) as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))  # the answer has started
        paused = httpx.post(keyed.url + "/admin/pause", json={"notice": "今晚升级，明早恢复"}, headers=admin, timeout=10)
        assert paused.status_code == 200 and paused.json()["paused"]
        refused = ask(keyed, keyed.keys["alice"])  # the very next request is refused
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "service_paused"
        assert refused.json()["error"]["message"] == "今晚升级，明早恢复" and refused.headers["Retry-After"]
        ready = httpx.get(keyed.url + "/readyz", timeout=10).json()
        assert ready["paused"] and ready["status"] == "paused" and ready["notice"] == "今晚升级，明早恢复"
        rest = [line for line in lines if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"  # the in-flight answer finished
    assert httpx.post(keyed.url + "/admin/resume", headers=admin, timeout=10).json()["status"] == "ready"
    assert ask(keyed, keyed.keys["alice"]).status_code == 200


def test_pause_by_flag_file(keyed):
    keyed.pause_file.write_text("法律助手维护中（文件开关）\n", encoding="utf-8")
    try:
        refused = ask(keyed, keyed.keys["alice"])  # no request to the server flipped it: the file did
        assert refused.status_code == 503 and refused.json()["error"]["message"] == "法律助手维护中（文件开关）"
        status = httpx.get(keyed.url + "/admin/status", headers=auth(ADMIN), timeout=10).json()
        assert status["paused"] and status["pause_source"] == "file"
    finally:
        keyed.pause_file.unlink()
    assert ask(keyed, keyed.keys["alice"]).status_code == 200


def test_metrics_count_requests_by_status_and_reason(keyed):
    ask(keyed, keyed.keys["alice"])
    text = httpx.get(keyed.url + "/metrics", timeout=10).text
    assert metric_value(text, "lawtune_requests_total", status="200", reason="ok") >= 1
    assert metric_value(text, "lawtune_requests_total", status="401", reason="unauthorized") >= 1
    assert metric_value(text, "lawtune_requests_total", status="429", reason="rate_limited") >= 1
    assert metric_value(text, "lawtune_requests_total", status="503", reason="paused") >= 1
    assert metric_value(text, "lawtune_requests_total", status="413", reason="too_large") >= 1
    assert metric_value(text, "lawtune_generated_tokens_total") >= 1
    assert metric_value(text, "lawtune_time_to_first_token_seconds_count") >= 1
    assert metric_value(text, "lawtune_request_latency_seconds_count") >= 1
    assert metric_value(text, "lawtune_breaker_state") == 0 and metric_value(text, "lawtune_paused") == 0
    assert "lawtune_queue_depth" in text and "lawtune_active_batch_size" in text
    # the server process's memory: a loaded model is tens of MiB at least, and the peak is never below now
    rss, peak = metric_value(text, "lawtune_resident_memory_bytes"), metric_value(text, "lawtune_peak_resident_memory_bytes")
    assert 20 * 2**20 < rss <= peak


def test_keys_never_reach_the_logs(keyed, caplog):
    import logging

    with caplog.at_level(logging.DEBUG):
        logging.getLogger("uvicorn.error").info("client sent Authorization: Bearer %s", keyed.keys["alice"])
        ask(keyed, "lt-some-invalid-key-123456")
    assert keyed.keys["alice"] not in caplog.text and "lt-some-invalid-key" not in caplog.text


# ---- fuzzing: no body, however malformed, gets a 5xx --------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 40), st.integers(2000, 10**6), st.floats(allow_nan=False),
                     st.text(max_size=12), st.sampled_from(["user", "system", "assistant", "tool", "run", ""]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)
_message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", 3]),
                                  "content": st.one_of(st.text(max_size=30), _json)})
_body = st.fixed_dictionaries({}, optional={
    "messages": st.one_of(st.lists(_message, max_size=3), _json), "max_tokens": _scalars,
    "temperature": _scalars, "top_p": _scalars, "stream": st.one_of(st.booleans(), _scalars), "stop": _json,
    "model": st.one_of(st.sampled_from(["", "nope"]), _scalars), "seed": _scalars, "n": _scalars,
    "stream_options": _json, "max_completion_tokens": _scalars})


@hyp_settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
@given(body=st.one_of(_body, _json), raw=st.booleans())
def test_fuzzed_bodies_never_get_a_5xx(keyed, body, raw):
    headers = {**auth(keyed.keys["alice"]), "Content-Type": "application/json"}
    content = json.dumps(body).encode()
    if raw:  # also bytes that are not JSON at all
        content = content[: len(content) // 2] + b"\xff\x00{"
    response = httpx.post(keyed.url + CHAT, content=content, headers=headers, timeout=60)
    assert response.status_code < 500, (body, response.status_code, response.text[:300])
    if response.status_code != 200:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
