"""The gateway's ASGI middleware: API keys (401/403), each key's requests/minute charged on arrival (429),
body-size limit (413), request metrics, and the safety net that frees a request's engine slot however its
answer ends.

    app.add_middleware(GatewayMiddleware, gateway=gateway)      # done by `install_gateway(app, gateway)`

Paths under /v1/ need a key; /admin/ needs an admin key; everything else (chat page, health, /metrics)
is public. The caller's `ApiKey` lands in `request.state.lawtune_key` for the handler's `admit`, the request
charged on arrival in `request.state.lawtune_grant`. Everything here reads headers only, so a request refused
here costs no parsing: the key comes before the body is read, and its requests/minute too, so a key that sends
invalid bodies is throttled (429) like any other instead of having each one parsed and refused; that 429 is
held for `REFUSAL_HOLD_S` (at most `MAX_HELD_REFUSALS_PER_KEY` at once per key), so a client that loops on
its refusals, ignoring Retry-After, waits instead of keeping the event loop busy. Pure ASGI
(not BaseHTTPMiddleware) so streamed answers pass through untouched and disconnects propagate.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from starlette.responses import JSONResponse

from lawtune.serving.errors import ApiError

REASON_BY_STATUS = {200: "ok", 401: "unauthorized", 403: "forbidden", 413: "too_large", 429: "rate_limited",
                    504: "timeout", 503: "engine_error"}


def _loopback_name(host: str) -> bool:
    """Is a Host header (name[:port]) this machine by a loopback name or address?"""
    from lawtune.serving.gateway.settings import is_loopback

    if host.startswith("["):  # [::1]:8000
        name = host[1:].split("]", 1)[0]
    else:  # name:port, or a bare IPv6 address (several colons)
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.lower()
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


def _reason(status: int, reason: str | None) -> str:
    if reason:
        return reason
    if status in REASON_BY_STATUS:
        return REASON_BY_STATUS[status]
    return "bad_request" if 400 <= status < 500 else "error"


class FailedLogins:
    """Wrong keys sent to /admin/* per client address, in fixed one-minute windows: past the limit, 429 until
    the window ends (guessing a chosen admin key costs minutes per ten tries). Old windows are dropped, so
    the table holds at most the addresses of the current minute."""

    def __init__(self, limit: int, window_s: float = 60.0):
        self.limit, self.window_s = limit, window_s
        self._window = 0
        self._counts: dict[str, int] = {}

    def _roll(self) -> None:
        window = int(time.time() // self.window_s)
        if window != self._window:
            self._window, self._counts = window, {}

    def record(self, address: str) -> None:
        self._roll()
        self._counts[address] = self._counts.get(address, 0) + 1

    def refusal(self, address: str) -> ApiError | None:
        self._roll()
        if self._counts.get(address, 0) < self.limit:
            return None
        retry = max(1, math.ceil((self._window + 1) * self.window_s - time.time()))
        return ApiError(429, f"too many failed admin logins from {address}; retry after {retry} s",
                        "rate_limit_error", code="too_many_failed_logins", headers={"Retry-After": str(retry)})


class GatewayMiddleware:
    def __init__(self, app: Any, gateway: Any):
        from lawtune.serving.gateway.settings import FAILED_ADMIN_LOGINS_PER_MINUTE

        self.app = app
        self.gateway = gateway
        self.failed_admin = FailedLogins(FAILED_ADMIN_LOGINS_PER_MINUTE)
        self._held: dict[str, int] = {}  # key name → its 429s being held now

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        state = scope.setdefault("state", {})
        state["lawtune_arrived"] = time.monotonic()
        counted = scope["method"] == "POST" and path.startswith("/v1/")
        sent = {"status": 500}

        async def tracking_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            await send(message)

        try:
            error = self._cross_site(scope, admin=path.startswith("/admin/"))
            if error is None and (path.startswith("/v1/") or path.startswith("/admin/")):
                error = self._authenticate(scope, state, admin=path.startswith("/admin/"))
            if error is None and counted:  # before the body is read: junk pays like any request
                error = await self._count_arrival(scope, state)
            if error is None:
                receive, error = await self._limit_body(scope, receive, state.get("lawtune_key"))
            if error is not None:
                await JSONResponse(error.body(), error.status, headers=error.headers)(scope, receive, tracking_send)
            else:
                await self.app(scope, receive, tracking_send)
        finally:
            ticket = state.get("lawtune_ticket")
            if ticket is not None:
                await ticket.release()  # no-op when the answer's own guard already released it
            if counted:
                status = sent["status"]
                self.gateway.metrics.count(status, _reason(status, state.get("lawtune_reason")))
                if status == 200:
                    self.gateway.metrics.latency.observe(time.monotonic() - state["lawtune_arrived"])

    def _cross_site(self, scope: dict, admin: bool) -> ApiError | None:
        """What a web page in the operator's browser must not do (issue 25 item 8). In open mode (no key: the
        browser's own loopback server) a foreign `Host` is DNS rebinding — a page whose name now points at
        127.0.0.1 reading the API — and a foreign `Origin` is a page posting to it. Admin routes, in any mode,
        take no foreign Origin and, for a POST with a body, only JSON (a cross-site form or `text/plain` POST
        needs no CORS preflight, so it would otherwise act). Non-browser clients send no Origin: unaffected."""
        open_mode = self.gateway.settings.open_access
        if not (open_mode or admin):
            return None
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if open_mode and not _loopback_name(host):
            return ApiError(403, f"Host {host!r} is not this server's (DNS rebinding?): an open server answers "
                            "only to localhost / 127.0.0.1", "permission_error", code="host_not_allowed")
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and not self._same_origin(origin, host, scope):
            return ApiError(403, f"Origin {origin!r} may not call this server" + (" 's admin API" if admin else "")
                            + " (a web page of another site); allow it with --cors-origins", "permission_error",
                            code="cross_origin_refused")
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if admin and scope["method"] == "POST" and content_type and content_type != "application/json":
            return ApiError(415, f"admin POSTs take application/json (or no body), not {content_type!r}",
                            code="unsupported_media_type")
        return None

    def _same_origin(self, origin: str, host: str, scope: dict) -> bool:
        if origin in (getattr(self.gateway, "cors_origins", None) or ()):
            return True
        scheme = "https" if scope.get("scheme") == "https" else "http"
        return origin == f"{scheme}://{host}"

    def _authenticate(self, scope: dict, state: dict, admin: bool) -> ApiError | None:
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1") or None
        client = scope.get("client")
        address = client[0] if client else "-"
        if admin:
            throttled = self.failed_admin.refusal(address)
            if throttled is not None:
                return throttled
        try:
            key = self.gateway.authenticate(authorization, client[0] if client else None)
        except ApiError as error:
            if admin and error.status == 401 and authorization:
                self.failed_admin.record(address)
            return error
        if admin and not key.admin:
            if authorization:
                self.failed_admin.record(address)
            return ApiError(403, "this endpoint needs an admin key (--admin-key, or `admin: true` in the keys file)",
                            "permission_error", code="admin_key_required")
        state["lawtune_key"] = key
        return None

    async def _count_arrival(self, scope: dict, state: dict) -> ApiError | None:
        from starlette.requests import Request

        from lawtune.serving.gateway.settings import MAX_HELD_REFUSALS_PER_KEY, REFUSAL_HOLD_S

        key = state["lawtune_key"]
        try:
            await self.gateway.count_arrival(Request(scope), key)
        except ApiError as error:
            held = self._held.get(key.name, 0)
            if error.status == 429 and held < MAX_HELD_REFUSALS_PER_KEY:
                self._held[key.name] = held + 1
                try:
                    await asyncio.sleep(REFUSAL_HOLD_S)
                finally:
                    self._held[key.name] -= 1
                    if not self._held[key.name]:
                        del self._held[key.name]
            return error
        return None

    async def _limit_body(self, scope: dict, receive: Any, key: Any = None) -> tuple[Any, ApiError | None]:
        """413 for bodies over the limit (the key's own, else --max-body-bytes): by Content-Length at once,
        else by reading at most limit+1 bytes."""
        limit = getattr(key, "max_body_bytes", None) or self.gateway.settings.max_body_bytes
        too_large = ApiError(413, f"request body is larger than {limit} bytes; send a shorter conversation",
                             code="request_too_large")
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                return receive, (too_large if int(length) > limit else None)
            except ValueError:
                return receive, ApiError(400, "invalid Content-Length header", code="invalid_request")
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return receive, None
        # Chunked upload: buffer it (bounded by the limit) and replay it to the app.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return receive, None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                return receive, too_large
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, None
