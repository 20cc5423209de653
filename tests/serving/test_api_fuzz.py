"""Fuzz the server's whole OpenAPI schema with schemathesis (valid and invalid requests for every operation)
against a real server on loopback: no 500, every error in the OpenAI envelope, the server still answers.

    .venv/bin/pytest tests/serving/test_api_fuzz.py -q
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from live_server import start_server


@pytest.fixture(scope="module")
def fuzzed(tiny_run_dir):
    """A server of its own: the fuzzer also pauses and resumes it through /admin."""
    from lawtune.serving.settings import ServeSettings

    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=8, default_max_tokens=4))
    yield live
    live.stop()


def _operations(live):
    schema = schemathesis.openapi.from_dict(live.app.openapi())
    return [result.ok() for result in schema.get_all_operations()]


def test_no_request_the_schema_allows_or_forbids_gets_a_500_or_a_bare_error(fuzzed):
    seen: dict[str, set[int]] = {}
    with httpx.Client(base_url=fuzzed.url, timeout=60) as http:
        for operation in _operations(fuzzed):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def check(case):
                    response = case.call(base_url=fuzzed.url, timeout=60)
                    seen.setdefault(operation.label, set()).add(response.status_code)
                    # 503 only when the service really is paused (the fuzzer calls /admin/pause too) or overloaded:
                    # never an engine error or an open breaker a request caused (issue 25 item 1 hid behind this)
                    assert response.status_code < 500 or response.status_code == 503, (case.body, response.text)
                    if response.status_code == 503:
                        code = response.json()["error"]["code"]
                        assert code in ("service_paused", "queue_full", "queue_timeout"), (case.body, response.text)
                        if code == "service_paused":
                            assert fuzzed.app.state.gateway.switch.state().paused
                    assert fuzzed.app.state.gateway.breaker.trips == 0, (case.body, response.text)
                    if response.status_code >= 400:
                        error = response.json()["error"]
                        assert set(error) == {"message", "type", "param", "code"} and error["message"], response.text

                try:
                    check()
                except Unsatisfiable:  # no invalid request exists for an operation without inputs (GET /healthz)
                    assert mode == GenerationMode.NEGATIVE
        http.post("/admin/resume")
        assert http.get("/healthz").status_code == 200
        answer = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "你好"}],
                                                         "max_tokens": 4})
        assert answer.status_code == 200, answer.text
    assert any(code == 200 for codes in seen.values() for code in codes)
    print({label: sorted(codes) for label, codes in seen.items()})
