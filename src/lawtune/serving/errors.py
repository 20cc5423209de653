"""API errors in the OpenAI envelope: `{"error": {"message", "type", "param", "code"}}`.

Every error the server answers with is an `ApiError` raised anywhere in a handler (or in an admission
step) and rendered by the one handler `install_error_handlers(app)` registers. Request-validation errors
from FastAPI/pydantic are translated into the same envelope, naming the offending field.

    raise ApiError(400, "model 'x' does not exist", "invalid_request_error", param="model", code="model_not_found")
"""

from __future__ import annotations

import re
from typing import Any


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
        field = _field_path(tuple(error.get("loc", ()))) or "body"
        described.append(f"{field}: {error.get('msg')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    param = _field_path(tuple(first.get("loc", ()))) or None
    return ApiError(400, "invalid request: " + "; ".join(described) + more, param=param, code="invalid_value")


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
