"""Circuit breaker: after N consecutive engine failures, stop sending work to the engine.

What counts as a failure (admission.Ticket.guard): an `EngineError` (crash, unreachable or 5xx upstream,
broken stream), and a timeout only when the engine did no work at all while the request waited (stalled).
A client's error never counts: a 4xx is a success (the engine is alive), bad input is refused before the
engine (token ids, logit_bias, stop strings: protocol.py), and a long answer cut by --timeout is no verdict.

    breaker = CircuitBreaker(failures=5, cooldown_s=30)
    if not breaker.allow(): answer 503 (degraded)
    ... generate ... → breaker.record_success() or breaker.record_failure()

closed ──N failures in a row──▶ open ──cool-down──▶ half_open (one probe request let through)
  ▲                                                    │ probe succeeds → closed; fails → open again
  └────────────────────────────────────────────────────┘
A request cancelled by its client proves nothing either way: `release()` frees its probe slot.
"""

from __future__ import annotations

import time
from typing import Callable, Literal

State = Literal["closed", "open", "half_open"]
STATE_CODES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}  # the metrics gauge values


class CircuitBreaker:
    def __init__(self, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.consecutive_failures = 0
        self._state: State = "closed"
        self._opened_at = 0.0
        self._probe_out = False  # half-open lets exactly one request through at a time
        self.trips = 0  # how many times it opened (for /admin/status)
        self.last_error: str | None = None

    @property
    def state(self) -> State:
        if self._state == "open" and self.clock() - self._opened_at >= self.cooldown_s:
            self._state, self._probe_out = "half_open", False
        return self._state

    def retry_after_s(self) -> float:
        return max(0.0, self.cooldown_s - (self.clock() - self._opened_at)) if self.state == "open" else 0.0

    def allow(self) -> bool:
        """May a request go to the engine now? In half-open, True once (the probe) until it reports."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._state, self._probe_out = "closed", False

    def record_failure(self, error: str = "") -> None:
        self.consecutive_failures += 1
        self.last_error = error or self.last_error
        if self._state == "half_open" or self.consecutive_failures >= self.threshold:
            if self._state != "open":
                self.trips += 1
            self._state, self._opened_at, self._probe_out = "open", self.clock(), False

    def release(self) -> None:
        """The request let through ended without a verdict (client went away): let another probe go."""
        if self._state == "half_open":
            self._probe_out = False
