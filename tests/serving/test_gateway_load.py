"""Two `lawtune serve` processes sharing one Redis rate-limit budget, and a load test: 300 requests at
concurrency 32 against a queue of 8 — every request ends 200, 429 or 503, none hangs, none gets a 500,
the server stays healthy and its memory flat.

    .venv/bin/pytest tests/serving/test_gateway_load.py -q
"""

from __future__ import annotations

import asyncio
import collections

import httpx
import pytest
from gateway_fixtures import ServerProcess, metric_value, redis_url  # noqa: F401  (redis_url: session fixture)

from lawtune.serving.gateway.keys import add_key

QUESTION = [{"role": "user", "content": "劳动合同到期不续签有补偿吗？"}]
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def replicas(tiny_run_dir, redis_url, tmp_path_factory):  # noqa: F811
    """Replicas A and B of one service: same keys file, same Redis budget; A has a queue of 8 behind 4 slots."""
    root = tmp_path_factory.mktemp("replicas")
    keys_file = root / "keys.yaml"
    keys = {"load": add_key(keys_file, "load", requests_per_minute=250),
            "shared": add_key(keys_file, "shared", requests_per_minute=6), "probe": add_key(keys_file, "probe")}
    common = [str(tiny_run_dir), "--no-base", "--keys-file", str(keys_file), "--rate-limit-storage", redis_url,
              "--rpm", "1000", "--tpm", "10000000", "--log-level", "warning"]
    a = ServerProcess(common + ["--max-batch-size", "4", "--queue-size", "8"], root / "a.log")
    b = ServerProcess(common + ["--max-batch-size", "2"], root / "b.log")
    for server in (a, b):
        server.start()
    a.keys = b.keys = keys
    yield a, b
    for server in (a, b):
        server.stop()


def post(server, key: str, **body) -> httpx.Response:
    return httpx.post(server.url + CHAT, json={"messages": QUESTION, "max_tokens": 2, **body},
                      headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_two_replicas_enforce_one_redis_budget(replicas):
    a, b = replicas
    statuses = [post(server, a.keys["shared"]).status_code for _ in range(5) for server in (a, b)]
    assert statuses.count(200) == 6 and statuses.count(429) == 4  # 6/min in total, not 6 per replica
    assert statuses[:6] == [200] * 6


async def _load(url: str, key: str, total: int, concurrency: int) -> tuple[collections.Counter, list[str]]:
    counts: collections.Counter = collections.Counter()
    problems: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=httpx.Timeout(90, connect=10)) as client:
        async def one(i: int) -> None:
            async with gate:
                try:
                    response = await client.post(CHAT, json={"messages": QUESTION, "max_tokens": 16, "seed": i,
                                                             "stream": i % 2 == 0})
                    counts[response.status_code] += 1
                    if response.status_code in (429, 503) and "Retry-After" not in response.headers:
                        problems.append(f"{response.status_code} without Retry-After")
                except httpx.HTTPError as error:  # a hang ends here (timeout) and fails the test
                    problems.append(f"{type(error).__name__}: {error}")

        await asyncio.gather(*(one(i) for i in range(total)))
    return counts, problems


def test_load_300_requests_at_concurrency_32_against_a_queue_of_8(replicas):
    a, _ = replicas
    warm, problems = asyncio.run(_load(a.url, a.keys["probe"], 40, 8))  # allocator warm-up
    assert not problems and warm[200] == 40
    rss_before = a.rss_bytes()
    counts, problems = asyncio.run(_load(a.url, a.keys["load"], 300, 32))
    rss_after = a.rss_bytes()
    assert not problems, problems[:5]
    assert set(counts) <= {200, 429, 503} and sum(counts.values()) == 300, counts
    assert counts[200] > 0 and counts[503] > 0  # the queue both served and turned work away
    # 429 only once the key's 250/min were spent (more may pass if the minute window rolled over meanwhile)
    assert counts[429] <= 50 and counts[200] + counts[503] >= 250
    assert rss_after - rss_before < 64 * 2**20, (rss_before, rss_after)
    # still healthy: answers at once, nothing left in flight, a normal request succeeds
    assert httpx.get(a.url + "/healthz", timeout=5).status_code == 200
    status = httpx.get(a.url + "/readyz", timeout=5).json()
    assert status["status"] == "ready" and status["active"] == 0 and status["queued"] == 0
    assert post(a, a.keys["probe"]).status_code == 200
    text = httpx.get(a.url + "/metrics", timeout=5).text
    assert metric_value(text, "lawtune_requests_total", status="503", reason="queue_full") == counts[503]
    assert metric_value(text, "lawtune_queue_depth") == 0 and metric_value(text, "lawtune_in_flight_requests") == 0
    print(f"load: {dict(counts)}; RSS {rss_before / 2**20:.0f} → {rss_after / 2**20:.0f} MiB")
