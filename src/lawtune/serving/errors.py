"""API errors in the OpenAI envelope: `{"error": {"message", "type", "param", "code"}}`, and request ids.

Every error the server answers with is an `ApiError` raised anywhere in a handler (or in an admission
step) and rendered by the one handler `install_error_handlers(app)` registers. Request-validation errors
from FastAPI/pydantic are translated into the same envelope, naming the offending field. Anything else
(a bug) becomes a 500 in the same envelope, with the request id, from `install_request_ids(app)`'s
middleware, which also puts `X-Request-Id` on every answer (the client's own, or a new one).

    raise ApiError(400, "model 'x' does not exist", "invalid_request_error", param="model", code="model_not_found")
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

log = logging.getLogger("lawtune.serving")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")  # what we echo back from a client's X-Request-Id
NO_RETRY = {"x-should-retry": "false"}  # the openai SDK retries 429/5xx twice unless told this


class ApiError(Exception):
    """An HTTP error with an OpenAI-style body; `headers` carries e.g. Retry-After for 429/503."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# pydantic names the branch of a union in `loc` ('str', 'list[TextPart]', 'function-after[...]'): not a field
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|[\w-]+\[.*\])$")


def _field_path(loc: tuple[Any, ...]) -> str:
    """('body', 'messages', 0, 'role') → 'messages[0].role' (the OpenAI `param` style)."""
    out = ""
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _UNION_TAG.match(str(part)):
            out += f".{part}" if out else str(part)
    return out


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """FastAPI `RequestValidationError.errors()` → one 400 naming the first bad field (all listed)."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        return ApiError(400, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}",
                        code="invalid_json")
    described = []
    for error in errors[:5]:
        field = _param(error) or "body"
        message = "unknown field: not part of this API (see docs/serving.md, Conformance)" \
            if error.get("type") == "extra_forbidden" else error.get("msg")
        described.append(f"{field}: {message}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    unsupported = first.get("type") in ("extra_forbidden", "unsupported")
    return ApiError(400, "invalid request: " + "; ".join(described) + more, param=_param(first),
                    code="unsupported_parameter" if unsupported else "invalid_value")


def _param(error: dict[str, Any]) -> str | None:
    """The field an error is about: its location, or the `param:NAME` type of a cross-field check."""
    kind = str(error.get("type", ""))
    if kind.startswith("param:"):
        return kind.removeprefix("param:")
    return _field_path(tuple(error.get("loc", ()))) or None


def install_error_handlers(app: Any) -> None:
    """Render ApiError, validation errors and HTTP errors (404/405) in the OpenAI envelope."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    async def on_api_error(request: Any, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    async def on_validation_error(request: Any, error: RequestValidationError) -> JSONResponse:
        return await on_api_error(request, validation_error(list(error.errors())))

    async def on_http_error(request: Any, error: HTTPException) -> JSONResponse:
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return await on_api_error(request, ApiError(error.status_code, str(error.detail), kind,
                                                    headers=getattr(error, "headers", None)))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)


class RequestIdMiddleware:
    """X-Request-Id on every answer (the client's, if it is a sane token, else a new one; in
    `request.state.request_id` for handlers and logs), and the catch-all: an exception no handler took
    becomes a 500 in the OpenAI envelope with `x-should-retry: false`, never a plain-text page."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            log.exception("request %s failed", request_id)
            if started:  # the answer is under way: nothing left to say but closing it
                return
            from starlette.responses import JSONResponse

            body = ApiError(500, f"internal error ({type(error).__name__}); request id {request_id}", "server_error",
                            code="internal_error").body()
            await JSONResponse(body, 500, headers={"x-should-retry": "false"})(scope, receive, send_with_id)


def install_request_ids(app: Any) -> None:
    app.add_middleware(RequestIdMiddleware)
