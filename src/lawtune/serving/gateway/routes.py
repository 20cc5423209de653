"""Wire the gateway into an app: middleware, `/admin/pause|resume|status`, `/metrics`.

    gateway = Gateway(settings, engine)
    install_gateway(app, gateway)          # in create_app, before the app starts

    curl -X POST -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' localhost:8000/admin/pause -d '{"notice": "系统维护中"}'
    curl -X POST -H "Authorization: Bearer $ADMIN" localhost:8000/admin/resume
    curl -H "Authorization: Bearer $ADMIN" localhost:8000/admin/status
    curl localhost:8000/metrics
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from lawtune.serving.gateway.admission import Gateway
from lawtune.serving.gateway.keys import install_log_redaction
from lawtune.serving.gateway.middleware import GatewayMiddleware

log = logging.getLogger("lawtune.gateway")


class PauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notice: str | None = Field(None, min_length=1, max_length=2000)  # shown to users; default: the configured one


def admin_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.post("/pause")
    async def pause(body: PauseBody | None = None) -> dict[str, Any]:
        gateway.switch.pause(body.notice if body else None)
        log.warning("service paused by the admin API")
        return gateway.status()

    @router.post("/resume")
    async def resume() -> dict[str, Any]:
        gateway.switch.resume()
        log.warning("service resumed by the admin API")
        return gateway.status()

    @router.get("/status")
    async def status() -> dict[str, Any]:
        return gateway.status()

    return router


def install_gateway(app: FastAPI, gateway: Gateway) -> None:
    app.state.gateway = gateway
    app.add_middleware(GatewayMiddleware, gateway=gateway)
    app.include_router(admin_router(gateway))

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)

    install_log_redaction()
