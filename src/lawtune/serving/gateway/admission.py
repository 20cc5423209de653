"""Admission control in front of the engine: who (keys), how much (limits), how many (queue), whether
(kill switch, circuit breaker) — one `Gateway` per app.

    gateway = Gateway(GatewaySettings(...), engine)
    # in the chat handler, after validation and prompt-token counting, before generation:
    ticket = await gateway.admit(request, prompt_tokens=n, max_tokens=m)    # raises ApiError 400/429/503
    gen_request.deadline = ticket.deadline          # the one deadline: arrival + --timeout, enforced by the engine
    async for event in ticket.guard(engine.generate(gen_request)): ...

    ticket = await gateway.admit(request, n, m, wait=False)   # a stream: start the response, send keep-alives,
    await ticket.wait_for_slot()                               # then wait for the slot (errors go in-band)

    await gateway.count_arrival(request, key)            # the middleware, before the body is read: 1 request (429)
    grant = await gateway.charge(request, estimate)      # before any work on the request (retrieval, tokenizing):
    ...                                                  # switch, breaker, the tokens of an estimate charged
    ticket = await gateway.admit(request, n, m, grant=grant)   # the charge corrected to prompt + max_tokens

Order of the checks, cheapest and least surprising first: the key's requests/minute (429, on arrival: an
invalid body costs its key one request like any other, so junk is throttled before it is even parsed) →
switch (paused → 503, the request given back) → breaker open (503, the same) → tokens/minute (429) → a queue slot (503 at once when the queue is
full; 503 when the deadline passes while waiting) → the breaker's half-open probe. `guard` records TTFT,
tokens, breaker verdicts and the deadline, and frees the slot when the answer ends however it ends; the
middleware frees it too if the answer never started, so a slot can never leak.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, AsyncIterator

from lawtune.serving.engines import EngineError, EngineTimeout, Finished, GenerationEvent, TextDelta
from lawtune.serving.errors import NO_RETRY, ApiError
from lawtune.serving.gateway.breaker import STATE_CODES, CircuitBreaker
from lawtune.serving.gateway.keys import ApiKey, KeyStore, bearer_token
from lawtune.serving.gateway.metrics import GatewayMetrics
from lawtune.serving.gateway.ratelimit import Grant, RateLimited, RateLimiter
from lawtune.serving.gateway.settings import DEFAULT_REQUEST_TIMEOUT_S, GatewaySettings
from lawtune.serving.gateway.switch import KillSwitch

log = logging.getLogger("lawtune.gateway")
UNAVAILABLE = "service_unavailable_error"


def _set_reason(request: Any, reason: str) -> None:
    request.state.lawtune_reason = reason  # read by the middleware for the requests-by-reason metric


class Gateway:
    """Keys, limits, queue, switch, breaker and metrics of one app (state lives here, not in globals)."""

    def __init__(self, settings: GatewaySettings, engine: Any = None, max_concurrency: int = 8,
                 request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S):
        # Unset fields inherit the server's: one slot per batch row, the server's request deadline.
        settings = settings.model_copy(update={
            "max_concurrency": settings.max_concurrency or max_concurrency,
            "request_timeout_s": settings.request_timeout_s or request_timeout_s})
        self.settings = settings
        self.engine = engine  # for the active-batch gauge; the app may set it after loading
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        self.keys = KeyStore(settings.keys_file, admin)
        self.limiter = RateLimiter(settings.rate_limit_storage)
        self.switch = KillSwitch(settings.pause_notice, settings.pause_file, settings.paused)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self.waiting = 0  # admitted, waiting for a slot
        self.in_flight = 0  # holding a slot
        self.metrics = GatewayMetrics(
            queue_depth=lambda: self.waiting + self._engine_value("queue_depth"),
            active_batch=lambda: self._engine_value("active_batch_size"),
            breaker_state=lambda: STATE_CODES[self.breaker.state],
            paused=lambda: float(self.switch.state().paused),
            in_flight=lambda: self.in_flight,
        )

    def engine_progress(self) -> int | None:
        """The engine's work counter (prefills, steps, upstream chunks); None when it keeps none."""
        value = getattr(self.engine, "progress", None)
        return value if isinstance(value, int) else None

    def _engine_value(self, name: str) -> float:
        try:
            return float(getattr(self.engine, name, 0) or 0)
        except Exception:  # a gauge must never break a scrape
            return 0.0

    # ---- who --------------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None, client_host: str | None) -> ApiKey:
        """The caller's key, or ApiError 401. Open mode (loopback only) lets any caller in: a known key
        still brings its own name and limits, anything else (no key, "sk-unused") is anonymous."""
        token = bearer_token(authorization)
        if token is not None:
            key = self.keys.lookup(token)
            if key is not None:
                return key
            if self.keys.problem is not None:  # the keys file is broken or gone: fail closed, and say why
                raise ApiError(503, "API keys are unavailable: the server's keys file is broken or missing; the "
                               "operator must fix it (see the server log)", UNAVAILABLE, code="keys_unavailable",
                               headers={"Retry-After": str(self.settings.retry_after_s)})
            if not self.settings.open_access:
                raise ApiError(401, "invalid API key: check the `Authorization: Bearer <key>` header (keys are "
                               "issued with `lawtune keys add`)", code="invalid_api_key",
                               headers={"WWW-Authenticate": "Bearer"})
        if self.settings.open_access:
            return ApiKey(f"open:{client_host or 'local'}", admin=self.settings.admin_key is None)
        raise ApiError(401, "missing API key: send `Authorization: Bearer <key>`", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})

    # ---- whether, how much, how many ----------------------------------------------------------------

    def degraded(self) -> ApiError | None:
        """The 503 a new request gets right now because of the switch or the breaker, if any."""
        state = self.switch.state()
        retry = str(self.settings.retry_after_s)
        if state.paused:
            return ApiError(503, state.notice, UNAVAILABLE, code="service_paused", headers={"Retry-After": retry})
        if self.breaker.state == "open":
            retry = str(max(1, math.ceil(self.breaker.retry_after_s())))
            return ApiError(503, self.settings.degraded_notice, UNAVAILABLE, code="service_degraded",
                            headers={"Retry-After": retry})
        return None

    def _key(self, request: Any) -> ApiKey:
        return getattr(request.state, "lawtune_key", None) or self.authenticate(
            request.headers.get("authorization"), request.client.host if request.client else None)

    async def _refuse_if_degraded(self, request: Any) -> None:
        refusal = self.degraded()
        if refusal is not None:
            _set_reason(request, "paused" if refusal.code == "service_paused" else "breaker_open")
            grant = getattr(request.state, "lawtune_grant", None)
            if grant is not None:  # the service's state, not the caller's doing: the request is given back
                await self._limited(request, self._key(request), self.limiter.uncount_request(grant))
            raise refusal

    async def count_arrival(self, request: Any, key: ApiKey) -> Grant:
        """Charge one request to the key as it arrives, before its body is read or validated (429 over its
        requests/minute): a key that sends junk is throttled like any other, at the cost of a counter. The
        grant waits in `request.state.lawtune_grant` for the request's tokens (`charge` / `admit`)."""
        rpm = key.requests_per_minute or self.settings.requests_per_minute
        grant = await self._limited(request, key, self.limiter.count_request(key.name, rpm))
        request.state.lawtune_grant = grant
        return grant

    async def charge(self, request: Any, estimate: int, check_switch: bool = True) -> Grant:
        """The first step of admission after validation, before any work is done for the request (retrieval,
        tokenizing): the switch and the breaker (503, the request given back), then `estimate` tokens charged
        to the key (429; capped at its tokens/minute, so only the exact count can be too large for the key —
        `admit(grant=)` corrects the charge to it), and one request unless it was counted on arrival. A request
        refused later (400: too long for the context) keeps this charge: its work was done.
        `check_switch=False`: the KB fallback of a paused service (which costs the key its request)."""
        key = self._key(request)
        if check_switch:
            await self._refuse_if_degraded(request)
        tpm = key.tokens_per_minute or self.settings.tokens_per_minute
        return await self._charge(request, key, min(estimate, tpm) if tpm else estimate)

    async def admit(self, request: Any, prompt_tokens: int, max_tokens: int, wait: bool = True,
                    grant: Grant | None = None) -> "Ticket":
        """Let one request through to the engine, or raise the ApiError (400/429/503) that says why not.

        `grant`: what `charge` took up front, corrected here to `prompt_tokens + max_tokens` (else charged now).
        `wait=False`: return once the request holds a slot or a place in the queue; the caller then awaits
        `ticket.wait_for_slot()` (a stream does that after its response started, to send keep-alives)."""
        arrived = getattr(request.state, "lawtune_arrived", None) or time.monotonic()
        key = self._key(request)
        await self._refuse_if_degraded(request)
        if grant is None:
            grant = await self._charge(request, key, prompt_tokens + max_tokens)
        else:
            await self._charge(request, key, prompt_tokens + max_tokens, grant=grant)
        ticket = Ticket(self, grant, arrived + self.settings.request_timeout_s, arrived, request)
        ticket.prompt_tokens = prompt_tokens
        ticket.engine_progress = self.engine_progress()
        request.state.lawtune_ticket = ticket  # the middleware's safety net releases it
        try:
            await self._queue_or_slot(request, ticket)
        except BaseException:
            await ticket.release(used_tokens=0)
            raise
        if wait:
            await ticket.wait_for_slot()
        return ticket

    async def _queue_or_slot(self, request: Any, ticket: "Ticket") -> None:
        """A free slot now, a place in the queue, or 503 queue_full at once."""
        if not self._slots.locked() and not self.waiting:
            await self._slots.acquire()  # returns at once: a slot is free and no one waits for it
            ticket.has_slot = True
            self.in_flight += 1
            return
        if self.waiting >= self.settings.queue_size:
            _set_reason(request, "queue_full")
            raise ApiError(503, f"the server is busy: {self.waiting} requests already waiting; retry shortly",
                           UNAVAILABLE, code="queue_full", headers={"Retry-After": str(self.settings.retry_after_s)})
        self.waiting += 1
        ticket.queued = True

    async def _charge(self, request: Any, key: ApiKey, tokens: int, grant: Grant | None = None) -> Grant:
        """Charge `tokens` (and one request, unless the arrival's grant already holds it), or, given the
        up-front `grant`, correct its token charge to `tokens`."""
        rpm = key.requests_per_minute or self.settings.requests_per_minute
        tpm = key.tokens_per_minute or self.settings.tokens_per_minute
        if grant is not None:
            return await self._limited(request, key, self.limiter.recharge(grant, tokens, tpm), grant)
        arrival = getattr(request.state, "lawtune_grant", None)
        if arrival is None:  # no middleware counted it (a Gateway used on its own): both at once
            return await self._limited(request, key, self.limiter.acquire(key.name, rpm, tpm, tokens))
        if arrival.request_item is None and rpm is not None:  # given back by a pause, charged again (KB fallback)
            counted = await self._limited(request, key, self.limiter.count_request(key.name, rpm))
            arrival.request_item, arrival.request_reset_at = counted.request_item, counted.request_reset_at
            arrival.windows = counted.windows + [w for w in arrival.windows if w.kind != "requests"]
        return await self._limited(request, key, self.limiter.charge_tokens(arrival, tpm, tokens))

    async def _limited(self, request: Any, key: ApiKey, charging: Any, grant: Grant | None = None) -> Any:
        """Await one of the limiter's charges; its refusal as the ApiError the client gets (429, or 400 when
        waiting cannot help; 503 when the limiter's storage is down)."""
        try:
            return await charging
        except RateLimited as limited:
            if grant is not None:  # the exact count does not fit: give back the estimate too (the request stays charged)
                await self.limiter.settle(grant, 0)
            _set_reason(request, "rate_limited")
            if limited.window.kind == "tokens" and limited.requested > limited.window.limit:
                # waiting cannot help: a 400 (not a 429 the SDK would retry) that says what to change
                _set_reason(request, "bad_request")
                raise ApiError(400, f"this request needs {limited.requested} tokens (prompt + max_tokens × n) but "
                               f"key {key.name!r} may use {limited.window.limit} tokens per minute; lower max_tokens",
                               param="max_tokens", code="tokens_exceed_rate_limit", headers=NO_RETRY) from None
            else:
                message = (f"rate limit reached for key {key.name!r}: {limited.window.limit} "
                           f"{limited.window.kind} per minute; retry after {limited.retry_after_s} s")
            raise ApiError(429, message, "rate_limit_error", code="rate_limit_exceeded", headers=limited.headers())
        except Exception as error:  # Redis down: fail closed, fast, and say so
            _set_reason(request, "limiter_unavailable")
            log.error("rate-limit storage %s failed: %s", self.limiter.storage_uri.split("@")[-1], error)
            raise ApiError(503, "rate-limit storage is unreachable; retry shortly", UNAVAILABLE,
                           code="limiter_unavailable", headers={"Retry-After": str(self.settings.retry_after_s)})

    def _free_slot(self) -> None:
        self.in_flight -= 1
        self._slots.release()

    # ---- state --------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What /admin/status and /readyz show."""
        switch = self.switch.state()
        breaker = self.breaker.state
        mode = "paused" if switch.paused else "degraded" if breaker == "open" else "ready"
        return {
            "status": mode,
            "paused": switch.paused,
            "pause_source": switch.source,
            "notice": switch.notice if switch.paused else self.settings.degraded_notice if breaker == "open" else None,
            "breaker": {"state": breaker, "consecutive_failures": self.breaker.consecutive_failures,
                        "trips": self.breaker.trips, "retry_after_s": round(self.breaker.retry_after_s(), 1)},
            "queue": {"waiting": self.waiting, "in_flight": self.in_flight, "queue_size": self.settings.queue_size,
                      "max_concurrency": self.settings.max_concurrency},
            "engine": {"active_batch_size": self._engine_value("active_batch_size"),
                       "queue_depth": self._engine_value("queue_depth")},
            "rate_limit_storage": self.limiter.storage_uri.split("://")[0],
            "keys_file_problem": self.keys.problem,
        }


class Ticket:
    """One admitted request: its rate-limit grant, its engine slot and its deadline (the only one: the
    engines enforce `deadline` itself, `guard` reports past it)."""

    def __init__(self, gateway: Gateway, grant: Grant, deadline: float, arrived: float, request: Any = None):
        self.gateway = gateway
        self.grant = grant
        self.deadline = deadline  # time.monotonic()
        self.arrived = arrived
        self.request = request
        self.prompt_tokens = 0
        self.has_slot = False
        self.queued = False  # holds a place in the queue
        self.released = False
        self.verdict = False  # the breaker heard about this request
        self.engine_progress: int | None = None  # the engine's work counter when it was admitted

    async def wait_for_slot(self) -> None:
        """Wait in the queue for an engine slot (503 queue_timeout past the deadline); then the switch and
        the breaker are asked again: a request that waited while they flipped is refused too."""
        gateway, request = self.gateway, self.request
        try:
            if self.queued:
                try:
                    await asyncio.wait_for(gateway._slots.acquire(), timeout=max(0.001, self.remaining_s()))
                except TimeoutError:
                    _set_reason(request, "queue_timeout")
                    raise ApiError(503, "the server is busy: the request waited in the queue past its deadline",
                                   UNAVAILABLE, code="queue_timeout", headers=NO_RETRY) from None
                finally:
                    self.queued = False
                    gateway.waiting -= 1
                self.has_slot = True
                gateway.in_flight += 1
            refusal = gateway.degraded()  # flipped while we waited: in-flight answers finish, queued ones don't
            if refusal is None and not gateway.breaker.allow():
                refusal = ApiError(503, gateway.settings.degraded_notice, UNAVAILABLE, code="service_degraded",
                                   headers={"Retry-After": str(gateway.settings.retry_after_s)})
            if refusal is not None:
                _set_reason(request, "paused" if refusal.code == "service_paused" else "breaker_open")
                raise refusal
        except BaseException:
            await self.release(used_tokens=0)
            raise
        gateway.metrics.prompt_tokens.inc(self.prompt_tokens)

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def rate_limit_headers(self) -> dict[str, str]:
        return self.grant.headers()

    async def release(self, used_tokens: int | None = None) -> None:
        """Free the slot and correct the token charge (None: keep the charge). Idempotent."""
        if self.released:
            return
        self.released = True
        if self.queued:
            self.queued = False
            self.gateway.waiting -= 1
        if self.has_slot:
            self.gateway._free_slot()
        if not self.verdict:
            self.gateway.breaker.release()
        if used_tokens is not None:
            try:
                await self.gateway.limiter.settle(self.grant, used_tokens)
            except Exception as error:  # the answer is already out; a failed refund only costs the caller
                log.warning("could not settle the token charge: %s", error)

    async def guard(self, events: AsyncIterator[GenerationEvent], choices: int = 1) -> AsyncIterator[GenerationEvent]:
        """Pass the engine's events through, recording what happened (TTFT, tokens, the breaker's verdict)
        and settling the token charge from the usage of all `choices` once they finished."""
        gateway, used = self.gateway, None
        first, prompt, completion, finished = True, 0, 0, 0
        try:
            async for event in events:
                if first and isinstance(event, TextDelta) and event.text:
                    first = False
                    gateway.metrics.ttft.observe(time.monotonic() - self.arrived)
                if isinstance(event, Finished):
                    gateway.metrics.generated_tokens.inc(event.usage.completion_tokens)
                    prompt, completion, finished = event.usage.prompt_tokens, completion + event.usage.completion_tokens, finished + 1
                    if finished == choices:
                        gateway.breaker.record_success()
                        self.verdict = True
                        used = prompt + completion
                yield event
        except EngineTimeout as error:
            # A timeout is an engine failure only when the engine did no work at all meanwhile (stalled,
            # unreachable). Else the answer was longer than --timeout allows or the server was busy: the
            # request's doing, which must not open the breaker for everyone; the charge stands.
            progress = gateway.engine_progress()
            if progress is None or progress == self.engine_progress:
                gateway.breaker.record_failure(f"{type(error).__name__}: {error}")
                self.verdict, used = True, 0
            raise
        except EngineError as error:
            gateway.breaker.record_failure(f"{type(error).__name__}: {error}")
            self.verdict = True
            used = 0  # the engine's fault: the caller gets the tokens back
            raise
        except ApiError as error:  # an upstream's 4xx passed through: the engine is alive
            if error.status < 500:
                gateway.breaker.record_success()
                self.verdict = True
            used = 0
            raise
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    pass
            await self.release(used)
