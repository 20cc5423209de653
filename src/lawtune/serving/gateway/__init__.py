"""Admission control for `lawtune serve`: API keys, rate limits, bounded queue, kill switch (服务降级),
circuit breaker, Prometheus metrics. See docs/gateway.md (the upstream engine for fronting vLLM is
`lawtune.serving.engines.upstream`)."""
