"""Hostile input against a live server (issue 25): what one ordinary key holder can send must get its precise
4xx — never a 500, never a 503 the client caused, never the circuit breaker opened for everyone — and a normal
request must succeed right after.

    .venv/bin/pytest tests/serving/test_hostile.py -q
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from live_server import start_server

from lawtune.serving.gateway.keys import add_key
from lawtune.serving.gateway.settings import REFUSAL_HOLD_S, GatewaySettings

QUESTION = [{"role": "user", "content": "公司拖欠工资怎么办？"}]
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


@pytest.fixture(scope="module")
def server(tiny_run_dir, bundled_kb, tmp_path_factory):
    """Keys: 'normal' (roomy limits) and 'hostile' (roomy too: the limits must not be what saves the server);
    --kb with the fallback; the default breaker (5 failures)."""
    from lawtune.serving.settings import ServeSettings

    keys_file = tmp_path_factory.mktemp("hostile") / "keys.yaml"
    keys = {name: add_key(keys_file, name) for name in ("normal", "hostile")}
    gateway = GatewaySettings(keys_file=keys_file, requests_per_minute=100_000, tokens_per_minute=100_000_000)
    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=4,
                                         default_max_tokens=8, serve_base=False, kb=str(bundled_kb), degrade_to_kb=True,
                                         gateway=gateway))
    live.keys = keys
    yield live
    live.stop()


def post(server, path: str, body: dict, key: str = "hostile", timeout: float = 120) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers={"Authorization": f"Bearer {server.keys[key]}"},
                      timeout=timeout)


def assert_refused(response: httpx.Response, status: int, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param or (error["param"] or "").startswith(param), error


def assert_still_serves(server) -> None:
    """The breaker is closed and a normal key's normal request gets an answer."""
    assert server.gateway.breaker.state == "closed", server.gateway.status()
    answer = post(server, CHAT, {"messages": QUESTION, "max_tokens": 4}, key="normal")
    assert answer.status_code == 200, answer.text


# ---- item 1: token ids out of the vocabulary never reach the engine -----------------------------------------


def test_out_of_vocabulary_prompt_ids_are_a_400_and_never_open_the_breaker(server):
    vocab = server.app.state.engine.vocab_size()
    for prompt in ([1_000_000_000], [vocab], [1, 2, vocab + 5], [2**63 - 1], [-1]):
        for _ in range(3):  # more than enough to open a 5-failure breaker together
            assert_refused(post(server, COMPLETIONS, {"prompt": prompt, "max_tokens": 2}), 400, "prompt")
    assert server.gateway.breaker.consecutive_failures == 0
    assert post(server, COMPLETIONS, {"prompt": [1, 2, vocab - 1], "max_tokens": 2}).status_code == 200
    assert_still_serves(server)


def test_logit_bias_keys_are_ascii_token_ids_in_the_vocabulary(server):
    for bias in ({"²": 1}, {"٣": 1}, {"9" * 5000: 1}, {"１": 1}, {"1e3": 1}, {"100000000": 5}):
        assert_refused(post(server, CHAT, {"messages": QUESTION, "max_tokens": 2, "logit_bias": bias}), 400,
                       "logit_bias")
    assert server.gateway.breaker.consecutive_failures == 0
    assert_still_serves(server)


def test_timeouts_of_long_answers_do_not_open_the_breaker(tiny_run_dir):
    """A key holder asking for answers longer than --timeout allows gets 504s; the engine kept working all
    along, so the breaker hears no failure (issue 25 item 1: timeouts used to count)."""
    from lawtune.serving.settings import ServeSettings

    from lawtune.modeling.decoding import DecodingPolicy

    gateway = GatewaySettings(open_access=True, breaker_failures=2)
    # no repetition stop: the random tiny model loops, and the stop would end its answers before the deadline
    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=2, serve_base=False,
                                      request_timeout_s=0.3, decoding=DecodingPolicy(repetition_stop=False),
                                      gateway=gateway))
    try:
        codes = [httpx.post(live.url + CHAT, json={"messages": QUESTION, "max_tokens": 900, "temperature": 0,
                                                   "repetition_penalty": 1.0}, timeout=60).status_code
                 for _ in range(4)]
        assert codes.count(504) >= 3, codes
        assert live.gateway.breaker.state == "closed" and live.gateway.breaker.trips == 0
    finally:
        live.stop()


# ---- item 3: stop strings ---------------------------------------------------------------------------------


def test_stop_strings_have_a_length_cap(server):
    from lawtune.serving.protocol import MAX_STOP_CHARS

    long = "法" * (MAX_STOP_CHARS + 1)
    assert_refused(post(server, CHAT, {"messages": QUESTION, "max_tokens": 2, "stop": long}), 400, "stop")
    assert_refused(post(server, CHAT, {"messages": QUESTION, "max_tokens": 2, "stop": ["a", long]}), 400, "stop")
    ok = post(server, CHAT, {"messages": QUESTION, "max_tokens": 4, "stop": ["法" * MAX_STOP_CHARS] * 4})
    assert ok.status_code == 200, ok.text


# ---- item 2: admission before work ------------------------------------------------------------------------


def test_a_request_is_charged_before_retrieval_and_tokenizing(tiny_run_dir, bundled_kb, tmp_path):
    """64k characters of 《刑法》 fail the context check (400) — after being charged: a key with 3 requests a
    minute gets 429 on the fourth, and each refusal is quick (the citation scan and retrieval are bounded)."""
    from lawtune.serving.settings import ServeSettings

    keys_file = tmp_path / "keys.yaml"
    key = add_key(keys_file, "tight", requests_per_minute=3)
    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=2, serve_base=False,
                                         kb=str(bundled_kb), gateway=GatewaySettings(keys_file=keys_file)))
    try:
        body = {"messages": [{"role": "user", "content": "《刑法》" * 16_000}], "max_tokens": 4}
        codes, slowest = [], 0.0
        for _ in range(4):
            started = time.monotonic()
            response = httpx.post(live.url + CHAT, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)
            slowest = max(slowest, time.monotonic() - started)
            codes.append(response.status_code)
        assert codes == [400, 400, 400, 429], codes
        assert slowest < 3.0, slowest
    finally:
        live.stop()


def test_paused_kb_fallback_is_charged_too(tiny_run_dir, bundled_kb, tmp_path):
    """--degrade-to-kb: a paused service still answers from the KB, under the key's limits."""
    from lawtune.serving.settings import ServeSettings

    keys_file = tmp_path / "keys.yaml"
    key = add_key(keys_file, "tight", requests_per_minute=2)
    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=2, serve_base=False,
                                         kb=str(bundled_kb), degrade_to_kb=True,
                                         gateway=GatewaySettings(keys_file=keys_file, paused=True)))
    try:
        codes = [httpx.post(live.url + CHAT, json={"messages": [{"role": "user", "content": "离婚需要什么材料？" * 20}]},
                            headers={"Authorization": f"Bearer {key}"}, timeout=60).status_code for _ in range(3)]
        assert codes == [200, 200, 429], codes
    finally:
        live.stop()


def test_invalid_bodies_count_against_the_key_before_they_are_parsed(tiny_run_dir, tmp_path):
    """A key that sends junk is throttled like any other (issue 25, the mixed load): every request counts one
    against its key's requests/minute on arrival, before its body is read, so after its minute's worth of 400s
    it gets 429 — for invalid JSON too, which proves the body was never parsed; held a moment, so a loop on
    429s waits — while another key is served.
    A paused service gives the request back; a key's own `max_body_bytes` is a 413 for that key alone."""
    from lawtune.serving.settings import ServeSettings

    keys_file = tmp_path / "keys.yaml"
    keys = {"junk": add_key(keys_file, "junk", requests_per_minute=4),
            "small": add_key(keys_file, "small", max_body_bytes=2048), "normal": add_key(keys_file, "normal")}
    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=2, serve_base=False,
                                      default_max_tokens=4, gateway=GatewaySettings(
                                          keys_file=keys_file, requests_per_minute=1000, tokens_per_minute=10**7)))

    def send(key: str, body: bytes) -> httpx.Response:
        return httpx.post(live.url + CHAT, content=body, timeout=60,
                          headers={"Authorization": f"Bearer {keys[key]}", "Content-Type": "application/json"})

    valid = json.dumps({"messages": QUESTION, "max_tokens": 2}).encode()
    try:
        junk = [b"{not json", b'{"messages": []}', b'{"prompt": [1000000000]}',
                json.dumps({"messages": QUESTION, "max_tokens": 0}).encode()]
        assert [send("junk", body).status_code for body in junk] == [400, 400, 400, 400]
        refused = send("junk", b"{not json")  # the fifth of the minute: 429, not the parser's 400
        assert_refused(refused, 429)
        assert refused.json()["error"]["code"] == "rate_limit_exceeded" and int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["X-RateLimit-Limit-Requests"] == "4"
        assert refused.headers["X-RateLimit-Remaining-Requests"] == "0"
        # held before it is answered: a client that loops on its 429s waits instead of spinning the server
        assert refused.elapsed.total_seconds() >= 0.9 * REFUSAL_HOLD_S
        assert send("junk", valid).status_code == 429  # the key's minute is spent, whatever it sends
        assert send("normal", valid).status_code == 200  # one key's junk is not another's problem

        big = valid[:-1] + b" " * 3000 + b"}"  # a valid short request, padded with JSON whitespace
        assert 2048 < len(big) < live.app.state.gateway.settings.max_body_bytes
        assert_refused(send("small", big), 413)
        assert send("small", valid).status_code == 200 and send("normal", big).status_code == 200

        live.gateway.switch.pause()  # the service's state, not the caller's doing: nothing is charged
        before = send("normal", valid).headers.get("X-RateLimit-Remaining-Requests")
        assert [send("normal", valid).status_code for _ in range(3)] == [503] * 3
        live.gateway.switch.resume()
        after = send("normal", valid)
        assert after.status_code == 200 and int(after.headers["X-RateLimit-Remaining-Requests"]) >= 1000 - 12
    finally:
        live.stop()


# ---- item 8: cross-site admin and DNS rebinding -------------------------------------------------------------


@pytest.fixture(scope="module")
def open_server(tiny_run_dir):
    """--open without an admin key: every caller on this machine is admin — but no web page may be."""
    from lawtune.serving.settings import ServeSettings

    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=2, serve_base=False,
                                         default_max_tokens=2, gateway=GatewaySettings(open_access=True)))
    yield live
    live.stop()


def test_a_foreign_page_cannot_pause_an_open_server(open_server):
    url = open_server.url
    form = httpx.post(url + "/admin/pause", content='{"notice": "hacked"}', timeout=10,
                      headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert_refused(form, 403)
    assert form.json()["error"]["code"] == "cross_origin_refused"
    assert_refused(httpx.post(url + "/admin/pause", headers={"Origin": "null"}, timeout=10), 403)
    plain = httpx.post(url + "/admin/pause", content="x", headers={"Content-Type": "text/plain"}, timeout=10)
    assert_refused(plain, 415)
    # a chat request from a foreign page is refused too (open mode: no key stands in the way)
    chat = httpx.post(url + CHAT, json={"messages": QUESTION}, headers={"Origin": "https://evil.example"}, timeout=30)
    assert_refused(chat, 403)
    assert not open_server.gateway.switch.state().paused
    # the operator's own tools: curl (no Origin) and a same-origin page
    same = httpx.post(url + "/admin/pause", json={"notice": "维护"}, headers={"Origin": url}, timeout=10)
    assert same.status_code == 200 and open_server.gateway.switch.state().paused
    assert httpx.post(url + "/admin/resume", timeout=10).status_code == 200
    assert httpx.post(url + CHAT, json={"messages": QUESTION, "max_tokens": 2}, timeout=60).status_code == 200


def test_dns_rebinding_host_is_refused_in_open_mode(open_server):
    port = open_server.url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", f"rebind.127.0.0.1.nip.io:{port}"):
        for method, path in (("GET", "/v1/models"), ("GET", "/admin/status"), ("POST", "/admin/pause")):
            response = httpx.request(method, open_server.url + path, headers={"Host": host}, timeout=10)
            assert_refused(response, 403)
            assert response.json()["error"]["code"] == "host_not_allowed"
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert httpx.get(open_server.url + "/v1/models", headers={"Host": host}, timeout=10).status_code == 200
    assert not open_server.gateway.switch.state().paused


# ---- item 9: keys ------------------------------------------------------------------------------------------


def test_keys_file_gone_fails_closed_and_admin_guesses_are_throttled(tiny_run_dir, tmp_path):
    from lawtune.serving.settings import ServeSettings

    keys_file = tmp_path / "keys.yaml"
    alice = add_key(keys_file, "alice")
    admin = "an-admin-key-long-enough-0123"
    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=2, serve_base=False,
                                         default_max_tokens=2, gateway=GatewaySettings(keys_file=keys_file,
                                                                                       admin_key=admin)))
    try:
        def ask(key):
            return httpx.post(live.url + CHAT, json={"messages": QUESTION, "max_tokens": 2},
                              headers={"Authorization": f"Bearer {key}"}, timeout=60)

        assert ask(alice).status_code == 200
        keys_file.unlink()  # deleting the file revokes its keys, loudly
        refused = ask(alice)
        assert_refused(refused, 503)
        assert refused.json()["error"]["code"] == "keys_unavailable"
        status = httpx.get(live.url + "/admin/status", headers={"Authorization": f"Bearer {admin}"}, timeout=10).json()
        assert "is gone" in status["keys_file_problem"] and status["breaker"]["state"] == "closed"
        bob = add_key(keys_file, "bob")
        assert ask(bob).status_code == 200 and ask(alice).status_code == 401
        # guessing the admin key: ten wrong tries a minute per address, then 429 (even for the right key)
        codes = [httpx.get(live.url + "/admin/status", headers={"Authorization": f"Bearer guess-{i}"},
                           timeout=10).status_code for i in range(11)]
        assert codes == [401] * 10 + [429], codes
        late = httpx.get(live.url + "/admin/status", headers={"Authorization": f"Bearer {admin}"}, timeout=10)
        assert_refused(late, 429)
        assert int(late.headers["Retry-After"]) <= 60
        assert ask(bob).status_code == 200  # the API itself is not throttled
    finally:
        live.stop()


def test_models_never_show_where_the_weights_live(server, tiny_run_dir):
    for path in ("/v1/models", f"/v1/models/{tiny_run_dir.name}"):
        response = httpx.get(server.url + path, headers={"Authorization": f"Bearer {server.keys['normal']}"}, timeout=10)
        assert response.status_code == 200 and str(tiny_run_dir.parent) not in response.text, response.text
        assert "/tmp" not in response.text and "/root" not in response.text


# ---- the generator: hostile values for every field -----------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_VALUES = {  # name → JSON text of the value
    "huge string": json.dumps("x" * 300_000),
    "huge CJK string (over the body limit)": json.dumps("法" * 400_000),
    "deeply nested list": _nested(100_000),
    "deeply nested object": '{"a":' * 5_000 + "1" + "}" * 5_000,
    "lone surrogate": '"\\ud800 问题"',
    "control characters": json.dumps("\x00\x01\x1b[31m\x7f\u2028\u2029\ufffe问"),
    "non-BMP characters": json.dumps("𠀀𪚥😀" * 2_000),
    "negative": "-1",
    "huge int": str(10**30),
    "int past 64 bits": str(2**64 + 1),
    "NaN": "NaN",
    "Infinity": "-Infinity",
    "float": "1e308",
    "true": "true",
    "null": "null",
    "empty list": "[]",
    "empty object": "{}",
    "long list of ints": json.dumps([5] * 40_000),
    "list of out-of-vocabulary ids": json.dumps([1, 2**31 - 1, 3]),
    "object with many keys": json.dumps({str(i): 1 for i in range(5_000)}),
}
CHAT_FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p",
               "n", "stream", "stream_options", "stop", "seed", "user", "frequency_penalty", "presence_penalty",
               "repetition_penalty", "logit_bias", "response_format", "logprobs", "top_logprobs", "tools",
               "tool_choice", "metadata", "modalities", "prediction", "unknown_field"]
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls"]
COMPLETION_FIELDS = ["prompt", "logprobs", "echo", "best_of", "suffix", "stop", "logit_bias", "max_tokens"]


def _body(base: dict, field: str, value_json: str, inside_message: bool = False) -> str:
    """`base` as JSON with `field` (of the body, or of its first message) set to the raw JSON text of a value."""
    marker = "__HOSTILE__"
    body = json.loads(json.dumps(base))
    (body["messages"][0] if inside_message else body)[field] = marker
    return json.dumps(body, ensure_ascii=False).replace(f'"{marker}"', value_json)


def test_generated_hostile_values_for_every_field_get_a_precise_4xx(server):
    """Every field × every hostile value through a live server: 200 when the value happens to be valid, else a
    400 / 404 (model) / 413 (body limit) in the error envelope — never a 5xx — and the breaker stays closed."""
    chat = {"messages": [{"role": "user", "content": "离婚需要什么材料？"}], "max_tokens": 1}
    completion = {"prompt": "合同", "max_tokens": 1}
    cases = [(CHAT, _body(chat, field, value), f"{field}={name}")
             for field in CHAT_FIELDS for name, value in HOSTILE_VALUES.items()]
    cases += [(CHAT, _body(chat, field, value, inside_message=True), f"messages[0].{field}={name}")
              for field in MESSAGE_FIELDS for name, value in HOSTILE_VALUES.items()]
    cases += [(COMPLETIONS, _body(completion, field, value), f"completions {field}={name}")
              for field in COMPLETION_FIELDS for name, value in HOSTILE_VALUES.items()]
    seen: dict[int, int] = {}
    with httpx.Client(base_url=server.url, timeout=120,
                      headers={"Authorization": f"Bearer {server.keys['hostile']}",
                               "Content-Type": "application/json"}) as http:
        for path, body, label in cases:
            response = http.post(path, content=body.encode("utf-8", "surrogatepass"))
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code in (200, 400, 404, 413), (label, response.status_code, response.text[:300])
            if response.status_code != 200 and "text/event-stream" not in response.headers.get("content-type", ""):
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"} and error["message"], (label, error)
    assert seen.get(400, 0) > len(cases) // 2 and seen.get(413, 0) >= 1, seen
    assert server.gateway.breaker.trips == 0 and server.gateway.breaker.consecutive_failures == 0
    assert_still_serves(server)


def test_an_empty_prompt_is_a_400_not_an_engine_failure(server):
    """Found by the tightened fuzz test: "" tokenizes to no ids with a tokenizer that adds no BOS, and the
    prefill of nothing failed in the engine (503, counted by the breaker)."""
    for _ in range(6):
        assert_refused(post(server, COMPLETIONS, {"prompt": "", "max_tokens": 1}), 400, "prompt")
    assert_still_serves(server)
