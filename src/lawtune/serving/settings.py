"""Settings of `lawtune serve` (one typed object; the CLI fills it, tests build it directly).

    settings = ServeSettings(model="runs/demo", port=8000, max_batch_size=8)
    app = create_app(settings)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="run folder, model folder or imported model name")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    adapter: Literal["best", "final"] = "best"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    serve_base: bool = Field(True, description="also serve the run's base model (a second copy in memory)")
    max_batch_size: int = Field(8, ge=1, le=256, description="sequences generated together")
    default_max_tokens: int = Field(512, ge=1, description="new tokens when a request gives no max_tokens")
    request_timeout_s: float = Field(300.0, gt=0, description="per-request deadline from arrival")
    max_context: int | None = Field(None, ge=16, description="cap on prompt + new tokens (default: the model's)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
