"""Prometheus metrics of one app, in its own CollectorRegistry (several apps in one process never collide).

    metrics = GatewayMetrics(queue_depth=lambda: ..., active_batch=lambda: ..., breaker_state=lambda: ...)
    metrics.requests.labels(status="429", reason="rate_limited").inc()
    GET /metrics → metrics.render()

Reasons: ok, rate_limited, queue_full, paused, breaker_open, bad_request, unauthorized, too_large,
timeout, engine_error, error. Gauges are read at scrape time from the live objects, so they are never stale.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from lawtune.memory import peak_rss_mib, rss_mib

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], float], active_batch: Callable[[], float],
                 breaker_state: Callable[[], float], paused: Callable[[], float], in_flight: Callable[[], float]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("lawtune_requests", "Chat requests by HTTP status and reason",
                                ["status", "reason"], registry=r)
        self.latency = Histogram("lawtune_request_latency_seconds", "Accepted chat requests, arrival to last byte",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("lawtune_time_to_first_token_seconds", "Arrival to first generated text",
                              buckets=TTFT_BUCKETS, registry=r)
        self.generated_tokens = Counter("lawtune_generated_tokens", "Completion tokens generated", registry=r)
        self.prompt_tokens = Counter("lawtune_prompt_tokens", "Prompt tokens of accepted requests", registry=r)
        Gauge("lawtune_queue_depth", "Requests admitted and waiting for an engine slot",
              registry=r).set_function(queue_depth)
        Gauge("lawtune_in_flight_requests", "Requests holding an engine slot", registry=r).set_function(in_flight)
        Gauge("lawtune_active_batch_size", "Sequences the engine is generating now",
              registry=r).set_function(active_batch)
        Gauge("lawtune_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
              registry=r).set_function(breaker_state)
        Gauge("lawtune_paused", "Kill switch: 1 paused (服务降级), 0 serving", registry=r).set_function(paused)
        Gauge("lawtune_resident_memory_bytes", "Resident set size of the server process now",
              registry=r).set_function(lambda: (rss_mib() or 0.0) * 2**20)
        Gauge("lawtune_peak_resident_memory_bytes", "Largest resident set size of the server process so far",
              registry=r).set_function(lambda: peak_rss_mib() * 2**20)

    def count(self, status: int, reason: str) -> None:
        self.requests.labels(status=str(status), reason=reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
