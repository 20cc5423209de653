"""Rate limits per key on requests/minute and tokens/minute, with the `limits` library.

    limiter = RateLimiter("memory://")                    # or "redis://127.0.0.1:6379/0" shared by replicas
    grant = await limiter.acquire("alice", rpm=60, tpm=40_000, tokens=prompt + max_tokens)
    ... generate ...
    await limiter.settle(grant, used_tokens=usage.total_tokens)   # give back what was charged but not used

A request is charged one request and `prompt + max_tokens` tokens up front (the most it can cost), so a
burst can never overshoot the budget; when it finishes the unused part is given back. Fixed one-minute
windows: Redis needs one INCRBY per counter, and the `Reset` header is simply the window's end. A refused
request is charged nothing. `RateLimited` carries what the 429 answer needs (`Retry-After`,
`X-RateLimit-Limit/Remaining/Reset`).

The server charges in two steps (`acquire` is both at once): the request when it arrives, before its body is
read (`count_request`: junk costs its key's budget like any request), its tokens once an estimate is known
(`charge_tokens`, on the same grant).

    grant = await limiter.count_request("alice", rpm=60)            # on arrival (the gateway's middleware)
    await limiter.charge_tokens(grant, tpm=40_000, tokens=estimate)  # before any work on the request
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.aio.strategies import FixedWindowRateLimiter


@dataclass
class Window:
    """One limit's state after a charge: for the X-RateLimit-* headers."""

    kind: str  # "requests" | "tokens"
    limit: int
    remaining: int
    reset_at: float  # unix time the window ends


@dataclass
class Grant:
    """What was charged, so that `settle` can give back the unused tokens."""

    identity: str
    request_item: RateLimitItemPerMinute | None = None  # the requests window charged, None: none (or given back)
    request_reset_at: float = 0.0
    charged_tokens: int = 0
    token_item: RateLimitItemPerMinute | None = None
    token_reset_at: float = 0.0
    windows: list[Window] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        return rate_limit_headers(self.windows)


class RateLimited(Exception):
    """Over a limit: `window` is the one that refused, `retry_after_s` when it frees up."""

    def __init__(self, window: Window, requested: int, windows: list[Window]):
        self.window = window
        self.requested = requested
        self.windows = windows
        self.retry_after_s = max(1, math.ceil(window.reset_at - time.time()))
        super().__init__(f"{window.kind} limit {window.limit}/min reached")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s), **rate_limit_headers(self.windows, self.window)}


def rate_limit_headers(windows: list[Window], primary: Window | None = None) -> dict[str, str]:
    """X-RateLimit-Limit/Remaining/Reset (for `primary`: the refusing window, else the requests window),
    and the OpenAI-style -Requests / -Tokens forms for each window."""
    headers: dict[str, str] = {}
    now = time.time()
    for window in windows:
        suffix = window.kind.capitalize()
        headers[f"X-RateLimit-Limit-{suffix}"] = str(window.limit)
        headers[f"X-RateLimit-Remaining-{suffix}"] = str(window.remaining)
        headers[f"X-RateLimit-Reset-{suffix}"] = str(max(0, math.ceil(window.reset_at - now)))
    if windows:
        main = primary or windows[0]
        headers["X-RateLimit-Limit"] = str(main.limit)
        headers["X-RateLimit-Remaining"] = str(main.remaining)
        headers["X-RateLimit-Reset"] = str(max(0, math.ceil(main.reset_at - now)))
    return headers


class RateLimiter:
    """Per-identity request and token budgets in one storage (memory, or Redis shared by replicas)."""

    def __init__(self, storage_uri: str = "memory://", namespace: str = "lawtune"):
        # Short socket timeouts: a Redis outage must fail the request fast, not hang the event loop's queue.
        # redis-py (already a dependency) rather than the default coredis client.
        options: dict = ({"implementation": "redispy", "socket_timeout": 2, "socket_connect_timeout": 2}
                         if storage_uri.startswith("redis") else {})
        self.storage = storage_from_string("async+" + storage_uri, **options)  # the asyncio flavour
        self.strategy = FixedWindowRateLimiter(self.storage)
        self.namespace = namespace
        self.storage_uri = storage_uri

    async def _charge(self, kind: str, identity: str, limit: int, cost: int) -> tuple[bool, Window, RateLimitItemPerMinute]:
        item = RateLimitItemPerMinute(limit, namespace=self.namespace)
        allowed = await self.strategy.hit(item, identity, kind, cost=cost)
        stats = await self.strategy.get_window_stats(item, identity, kind)
        return allowed, Window(kind, limit, stats.remaining, stats.reset_time), item

    async def _refund(self, item: RateLimitItemPerMinute, identity: str, kind: str, amount: int, reset_at: float) -> None:
        # Only within the window that was charged: after it rolled over, a refund would mint free budget.
        if amount and time.time() < reset_at:
            await self.storage.incr(item.key_for(identity, kind), item.get_expiry(), amount=-amount)

    async def acquire(self, identity: str, rpm: int | None, tpm: int | None, tokens: int) -> Grant:
        """Charge one request and `tokens` tokens, or raise RateLimited having charged nothing."""
        grant = await self.count_request(identity, rpm)
        try:
            await self.charge_tokens(grant, tpm, tokens)
        except RateLimited as limited:
            await self.uncount_request(grant)
            limited.windows = grant.windows
            raise
        return grant

    async def count_request(self, identity: str, rpm: int | None) -> Grant:
        """Charge one request (on its arrival), or raise RateLimited having charged nothing."""
        grant = Grant(identity)
        if rpm is None:
            return grant
        allowed, window, item = await self._charge("requests", identity, rpm, 1)
        grant.windows.append(window)
        if not allowed:  # `hit` counted it anyway: take it back
            await self._refund(item, identity, "requests", 1, window.reset_at)
            window.remaining = await self._remaining(item, identity, "requests", rpm)
            raise RateLimited(window, 1, grant.windows)
        grant.request_item, grant.request_reset_at = item, window.reset_at
        return grant

    async def uncount_request(self, grant: Grant) -> None:
        """Give back the request `count_request` charged (a refusal that was not the caller's doing)."""
        if grant.request_item is None:
            return
        item, grant.request_item = grant.request_item, None
        await self._refund(item, grant.identity, "requests", 1, grant.request_reset_at)
        for window in grant.windows:
            if window.kind == "requests":
                window.remaining = await self._remaining(item, grant.identity, "requests", window.limit)

    async def charge_tokens(self, grant: Grant, tpm: int | None, tokens: int) -> Grant:
        """Charge `tokens` tokens to the request of `grant`, or raise RateLimited having charged no tokens."""
        if tpm is None:
            return grant
        allowed, window, item = await self._charge("tokens", grant.identity, tpm, tokens)
        grant.windows = [w for w in grant.windows if w.kind != "tokens"] + [window]
        if not allowed:
            await self._refund(item, grant.identity, "tokens", tokens, window.reset_at)
            window.remaining = await self._remaining(item, grant.identity, "tokens", tpm)
            raise RateLimited(window, tokens, grant.windows)
        grant.charged_tokens, grant.token_item, grant.token_reset_at = tokens, item, window.reset_at
        return grant

    async def _remaining(self, item: RateLimitItemPerMinute, identity: str, kind: str, limit: int) -> int:
        stats = await self.strategy.get_window_stats(item, identity, kind)
        return max(0, min(limit, stats.remaining))

    async def recharge(self, grant: Grant, tokens: int, tpm: int | None) -> None:
        """Correct an up-front estimate to the exact `tokens`: give back what was over, charge what was
        under (RateLimited, charging nothing more, when that does not fit the window)."""
        extra = tokens - grant.charged_tokens
        if grant.token_item is None or tpm is None:
            return
        allowed = True
        if extra <= 0:
            await self.settle(grant, tokens)
        else:
            allowed = await self.strategy.hit(grant.token_item, grant.identity, "tokens", cost=extra)
        stats = await self.strategy.get_window_stats(grant.token_item, grant.identity, "tokens")
        window = Window("tokens", tpm, stats.remaining, stats.reset_time)  # the headers say the corrected charge
        grant.windows = [w for w in grant.windows if w.kind != "tokens"] + [window]
        if extra <= 0:
            return
        if not allowed:  # `hit` counted it anyway: take it back at once (the same window)
            await self.storage.incr(grant.token_item.key_for(grant.identity, "tokens"),
                                    grant.token_item.get_expiry(), amount=-extra)
            window.remaining = max(0, min(tpm, window.remaining + extra))
            # the request as a whole is what the 400 (more than the key's minute) or 429 is about
            raise RateLimited(window, tokens if tokens > tpm else extra, grant.windows)
        grant.charged_tokens = tokens

    async def settle(self, grant: Grant, used_tokens: int) -> None:
        """Correct the up-front token charge to what the request really used (either direction)."""
        if grant.token_item is None:
            return
        await self._refund(grant.token_item, grant.identity, "tokens", grant.charged_tokens - used_tokens,
                           grant.token_reset_at)
        grant.charged_tokens = used_tokens

    async def check(self) -> bool:
        """Is the storage reachable? (Redis down → requests get 503, /readyz says why.)"""
        return bool(await self.storage.check())
