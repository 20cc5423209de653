"""The gateway's pieces on their own: keys file + reload + redaction, rate limits (memory and a real Redis),
kill switch (API and flag file), circuit breaker transitions, settings checks.

    .venv/bin/pytest tests/serving/test_gateway_units.py -q
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
from gateway_fixtures import redis_url  # noqa: F401  (session fixture)

from lawtune.errors import LawtuneError
from lawtune.serving.gateway.breaker import CircuitBreaker
from lawtune.serving.gateway.keys import KeyStore, RedactSecrets, add_key, bearer_token, hash_key, remove_key
from lawtune.serving.gateway.ratelimit import RateLimited, RateLimiter
from lawtune.serving.gateway.settings import GatewaySettings
from lawtune.serving.gateway.switch import KillSwitch

# ---- keys ---------------------------------------------------------------------------------------------


def test_keys_file_stores_hashes_only_and_reloads_on_change(tmp_path):
    path = tmp_path / "keys.yaml"
    alice = add_key(path, "alice", requests_per_minute=7)
    assert alice.startswith("lt-") and alice not in path.read_text()
    assert hash_key(alice) in path.read_text()
    store = KeyStore(path)
    assert store.lookup(alice).name == "alice" and store.lookup(alice).requests_per_minute == 7
    assert store.lookup("lt-not-a-key") is None

    bob = add_key(path, "bob", admin=True)  # written atomically by another process: picked up, no restart
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # be sure the mtime moved
    assert store.lookup(bob).name == "bob" and store.lookup(bob).admin

    path.write_text("keys: [{name: broken}]")  # a bad edit: fail closed (it may have been a revocation), say why
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert store.lookup(alice) is None and "keys.0.sha256" in store.problem


def test_keys_file_errors_name_file_and_fix(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n  - name: a\n    sha256: nothex\n")
    with pytest.raises(LawtuneError, match="keys.yaml is invalid: keys.0.sha256"):
        KeyStore(path)
    with pytest.raises(LawtuneError, match="lawtune keys add"):
        KeyStore(tmp_path / "missing.yaml")
    add_key(tmp_path / "k.yaml", "a")
    with pytest.raises(LawtuneError, match="already has a key named 'a'"):
        add_key(tmp_path / "k.yaml", "a")


def test_admin_key_and_bearer_parsing():
    store = KeyStore(None, admin_key="lt-admin-secret-123456")
    assert store.lookup("lt-admin-secret-123456").admin
    assert store.lookup("lt-admin-secret-12345") is None
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token("Bearer ") is None and bearer_token(None) is None


def test_log_filter_redacts_keys_and_bearer_tokens(caplog):
    logger = logging.getLogger("lawtune.test-redaction")
    logger.addFilter(RedactSecrets())
    with caplog.at_level(logging.INFO, logger="lawtune.test-redaction"):
        logger.info("header %s and key %s", "Bearer sk-abcdef0123456789", "lt-AbCdEf0123456789_-xyz")
        logger.info("inline Authorization: Bearer lt-SECRET0123456789")
    text = caplog.text
    assert "sk-abcdef" not in text and "AbCdEf0123" not in text and "SECRET0123" not in text
    assert text.count("[REDACTED]") == 3


# ---- rate limits ----------------------------------------------------------------------------------------


async def _exercise_limits(limiter: RateLimiter, who: str) -> None:
    grant = await limiter.acquire(who, rpm=3, tpm=100, tokens=60)
    assert grant.headers()["X-RateLimit-Remaining"] == "2"
    assert grant.headers()["X-RateLimit-Remaining-Tokens"] == "40"
    with pytest.raises(RateLimited) as refused:  # 60 more tokens do not fit in 40
        await limiter.acquire(who, rpm=3, tpm=100, tokens=60)
    headers = refused.value.headers()
    assert refused.value.window.kind == "tokens" and 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-RateLimit-Limit"] == "100" and headers["X-RateLimit-Remaining"] == "40"
    assert headers["X-RateLimit-Remaining-Requests"] == "2"  # the refused request was charged nothing
    await limiter.settle(grant, used_tokens=15)  # finished early: 45 tokens come back
    second = await limiter.acquire(who, rpm=3, tpm=100, tokens=60)
    assert second.headers()["X-RateLimit-Remaining-Tokens"] == "25"
    await limiter.acquire(who, rpm=3, tpm=100, tokens=1)
    with pytest.raises(RateLimited) as refused:
        await limiter.acquire(who, rpm=3, tpm=100, tokens=1)
    assert refused.value.window.kind == "requests" and refused.value.headers()["X-RateLimit-Remaining"] == "0"


def test_rate_limits_in_memory():
    asyncio.run(_exercise_limits(RateLimiter("memory://"), "alice"))


def test_a_request_is_counted_on_arrival_and_its_tokens_later():
    """The server's two steps: the request on arrival (before its body is read), its tokens once estimated.
    A token refusal leaves the request counted (it arrived); `uncount_request` gives it back (a pause)."""

    async def run() -> None:
        limiter = RateLimiter("memory://")
        grant = await limiter.count_request("bob", rpm=2)
        assert grant.headers()["X-RateLimit-Remaining-Requests"] == "1"
        with pytest.raises(RateLimited) as refused:
            await limiter.charge_tokens(grant, tpm=10, tokens=11)
        assert refused.value.window.kind == "tokens" and refused.value.headers()["X-RateLimit-Remaining-Tokens"] == "10"
        await limiter.charge_tokens(grant, tpm=10, tokens=4)
        assert grant.charged_tokens == 4 and grant.headers()["X-RateLimit-Remaining-Tokens"] == "6"
        second = await limiter.count_request("bob", rpm=2)
        with pytest.raises(RateLimited) as refused:  # the third in the minute, charged nothing
            await limiter.count_request("bob", rpm=2)
        assert refused.value.window.kind == "requests" and refused.value.headers()["X-RateLimit-Remaining"] == "0"
        await limiter.uncount_request(second)
        await limiter.uncount_request(second)  # once only
        assert second.headers()["X-RateLimit-Remaining-Requests"] == "1"
        await limiter.count_request("bob", rpm=2)
        with pytest.raises(RateLimited):
            await limiter.count_request("bob", rpm=2)

    asyncio.run(run())


def test_rate_limits_in_redis_are_shared_between_limiters(redis_url):  # noqa: F811
    async def run() -> None:
        first, second = RateLimiter(redis_url), RateLimiter(redis_url)  # two replicas, one budget
        who = f"bob-{time.time_ns()}"
        await _exercise_limits(first, who)
        with pytest.raises(RateLimited):
            await second.acquire(who, rpm=3, tpm=100, tokens=1)
        assert await second.check()

    asyncio.run(run())


# ---- kill switch ----------------------------------------------------------------------------------------


def test_switch_by_api_without_file():
    switch = KillSwitch("默认通知")
    assert not switch.state().paused
    state = switch.pause("系统维护，十点恢复")
    assert state.paused and state.notice == "系统维护，十点恢复" and state.source == "api"
    assert not switch.resume().paused


def test_switch_flag_file_is_the_state(tmp_path):
    flag = tmp_path / "ops" / "paused"
    switch = KillSwitch("默认通知", pause_file=flag)
    assert not switch.state().paused
    flag.parent.mkdir()
    flag.write_text("")  # an operator touches the file: paused with the default notice, on the next check
    assert switch.state() == switch.state() and switch.state().paused and switch.state().notice == "默认通知"
    flag.write_text("今晚升级，明早恢复\n")
    assert switch.state().notice == "今晚升级，明早恢复" and switch.state().source == "file"
    flag.unlink()
    assert not switch.state().paused
    switch.pause("API 暂停")  # the API writes the file, so replicas sharing it flip together
    assert flag.read_text().strip() == "API 暂停" and KillSwitch("x", pause_file=flag).state().paused
    switch.resume()
    assert not flag.exists() and not switch.state().paused


def test_switch_starts_paused():
    assert KillSwitch("通知", paused=True).state().paused


# ---- circuit breaker -------------------------------------------------------------------------------------


def test_breaker_closed_open_half_open_closed():
    now = [0.0]
    breaker = CircuitBreaker(failures=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure("boom")
    assert breaker.state == "closed"
    breaker.record_success()  # a success in between resets the count: failures must be consecutive
    for _ in range(3):
        breaker.record_failure("boom")
    assert breaker.state == "open" and not breaker.allow() and breaker.retry_after_s() == 10
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # exactly one probe
    breaker.record_failure("still down")  # probe fails → open again for a full cool-down
    assert breaker.state == "open" and breaker.trips == 2
    now[0] = 20.0
    assert breaker.allow()
    breaker.release()  # probe's client went away: no verdict, another probe may go
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


# ---- settings -------------------------------------------------------------------------------------------


def test_open_mode_only_on_loopback_and_keys_required_otherwise():
    GatewaySettings(open_access=True).check_bind("127.0.0.1")
    GatewaySettings(open_access=True).check_bind("::1")
    with pytest.raises(LawtuneError, match="only allowed on a loopback address"):
        GatewaySettings(open_access=True).check_bind("0.0.0.0")
    with pytest.raises(LawtuneError, match="no API keys configured"):
        GatewaySettings().check_bind("127.0.0.1")
    with pytest.raises(ValueError, match="not memory:// or redis://"):
        GatewaySettings(rate_limit_storage="mongodb://x")


# ---- admission with the limiter's storage down ---------------------------------------------------------------


def test_unreachable_redis_fails_closed_and_fast():
    from types import SimpleNamespace

    from lawtune.serving.errors import ApiError
    from lawtune.serving.gateway.admission import Gateway
    from lawtune.serving.gateway.keys import ApiKey

    async def run() -> ApiError:
        gateway = Gateway(GatewaySettings(open_access=True, rate_limit_storage="redis://127.0.0.1:1/0"))
        request = SimpleNamespace(state=SimpleNamespace(lawtune_key=ApiKey("x"), lawtune_arrived=time.monotonic()),
                                  headers={}, client=None)
        with pytest.raises(ApiError) as refused:
            await gateway.admit(request, prompt_tokens=10, max_tokens=10)
        assert request.state.lawtune_reason == "limiter_unavailable"
        assert gateway.in_flight == 0 and gateway.waiting == 0  # nothing held
        return refused.value

    error = asyncio.run(run())
    assert error.status == 503 and error.code == "limiter_unavailable" and error.headers["Retry-After"]


def test_keys_file_fails_closed_when_broken_or_deleted_and_recovers(tmp_path, caplog):
    path = tmp_path / "keys.yaml"
    alice = add_key(path, "alice")
    store = KeyStore(path, admin_key="lt-admin-secret-123456")
    assert store.lookup(alice).name == "alice" and store.problem is None
    text = path.read_text()
    with caplog.at_level(logging.ERROR, logger="lawtune.gateway"):
        path.write_text(text.replace("keys:", "keys: [", 1))  # a YAML typo in a revoking edit
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
        assert store.lookup(alice) is None and "not valid YAML" in store.problem
        path.unlink()
        assert store.lookup(alice) is None and "is gone" in store.problem
    assert sum("REFUSING EVERY KEY" in record.message for record in caplog.records) == 2
    assert store.lookup("lt-admin-secret-123456").admin  # the admin key still works
    path.write_text(text)  # fixed: served again
    assert store.lookup(alice).name == "alice" and store.problem is None


def test_keys_remove_lock_and_mode(tmp_path):
    import concurrent.futures

    path = tmp_path / "keys.yaml"
    first = add_key(path, "first")
    assert path.stat().st_mode & 0o777 == 0o600  # a new keys file is its owner's only
    path.chmod(0o640)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # concurrent adds: none lost
        list(pool.map(lambda i: add_key(path, f"user{i}"), range(24)))
    store = KeyStore(path)
    assert len(store) == 25 and path.stat().st_mode & 0o777 == 0o640  # the mode is kept
    remove_key(path, "first")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert store.lookup(first) is None and len(store) == 24
    with pytest.raises(LawtuneError, match="no key named 'first'"):
        remove_key(path, "first")


def test_admin_key_has_a_minimum_length():
    with pytest.raises(ValueError, match="at least 16 characters"):
        GatewaySettings(admin_key="short-key")
    assert GatewaySettings(admin_key="a-long-enough-admin-key").admin_key is not None


def test_keys_remove_command(tmp_path):
    from typer.testing import CliRunner

    from lawtune.cli import app

    path = tmp_path / "keys.yaml"
    add_key(path, "alice")
    add_key(path, "bob")
    runner = CliRunner()
    result = runner.invoke(app, ["keys", "remove", "alice", "--keys-file", str(path)])
    assert result.exit_code == 0, result.output
    assert [key.name for key in KeyStore(path)._keys.values()] == ["bob"]
    again = runner.invoke(app, ["keys", "remove", "alice", "--keys-file", str(path)])
    assert again.exit_code != 0 and "no key named 'alice'" in str(again.exception)  # the CLI's one-line error
