"""Admission control for `lawtune serve`: API keys, rate limits, bounded queue, kill switch (服务降级),
circuit breaker, Prometheus metrics, and the upstream engine for fronting vLLM. See docs/gateway.md."""
