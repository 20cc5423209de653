"""Settings of `lawtune serve` (one typed object; the CLI fills it, tests build it directly).

    settings = ServeSettings(model="runs/demo", port=8000, max_batch_size=8)
    app = create_app(settings)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from lawtune.modeling.decoding import DecodingPolicy
from lawtune.serving.gateway.settings import DEFAULT_REQUEST_TIMEOUT_S, GatewaySettings


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="run folder, model folder or imported model name (optional with upstream)")
    served_model_name: list[str] = Field(default_factory=list, description="names of the main model in the API: "
                                         "the first replaces the folder name, the others are aliases")
    lora_modules: dict[str, str] = Field(default_factory=dict, description="more runs on the same base: name → run "
                                         "folder, served beside the main run with one copy of the base weights")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    adapter: Literal["best", "final"] = "best"
    # auto: bfloat16 on hardware with bf16 (AVX512-BF16/AMX CPUs, most GPUs) — 2.75× the float32 throughput
    # at 8 clients there (docs/serving.md) — else float32, which is faster than emulated bf16
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # torch: transformers + PEFT (multi-LoRA, the base beside the run); llama.cpp: the run as a quantized GGUF
    # (fewer bytes per token: faster on CPU, one model per server; docs/serving.md "Engines")
    engine: Literal["torch", "llama.cpp"] = "torch"
    gguf_quant: Literal["Q8_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q4_0", "f16", "f32"] = Field(
        "Q8_0", description="llama.cpp engine: the quantization (or float type) a run's merged GGUF is made with")
    threads: int | None = Field(None, ge=1, le=512, description="CPU threads of the engine (default: all CPUs; "
                                "on a machine shared with other jobs 1 thread or OMP_WAIT_POLICY=PASSIVE is faster)")
    serve_base: bool = Field(True, description="also serve the run's base model as RUN:base (alias `base`)")
    max_batch_size: int = Field(8, ge=1, le=256, description="sequences generated together")
    default_max_tokens: int = Field(512, ge=1, description="new tokens when a request gives no max_tokens")
    request_timeout_s: float = Field(DEFAULT_REQUEST_TIMEOUT_S, gt=0, description="per-request deadline from arrival")
    max_context: int | None = Field(None, ge=16, description="cap on prompt + new tokens (default: the model's)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed to call the API "
                                    "(CORS); empty: no CORS headers")
    sse_keepalive_s: float = Field(15.0, ge=0, description="a comment line this often while a stream waits; 0 = off")
    # the local engine's decoding defaults (repetition control, repetition stop); requests may override penalties
    decoding: DecodingPolicy = Field(default_factory=DecodingPolicy)
    # gateway (admission control). In Python the default is open and unlimited on loopback (tests, notebooks);
    # `lawtune serve` asks for keys or an explicit --open and applies the rate-limit defaults.
    gateway: GatewaySettings = Field(default_factory=lambda: GatewaySettings(
        open_access=True, requests_per_minute=None, tokens_per_minute=None))
    upstream: str | None = Field(None, description="OpenAI-compatible engine URL to front instead of a local model")
    upstream_key: SecretStr | None = None
    # knowledge base (lawtune.serving.kb): RAG prompts + the `lawtune` response field; the KB-only fallback
    kb: str | None = Field(None, description="knowledge base file (or URL) for retrieval-augmented answers")
    kb_k: int = Field(3, ge=1, le=20, description="articles retrieved per question")
    kb_chars: int = Field(200, ge=20, le=2000, description="characters kept of each article")
    degrade_to_kb: bool = Field(False, description="paused / breaker open: answer with the top articles, not 503")
    kb_cite_constraint: bool = Field(True, description="local engines: an article number in an answer may only be "
                                     "one of the retrieved articles (lawtune.kb.cite_constrain)")
    # server-side tools (lawtune.serving.tool_agent): the agent loop for requests that bring no tools of their own
    tools: Literal["none", "builtin"] = Field("none", description="builtin: answer with the built-in legal tools")
    tool_rounds: int = Field(4, ge=1, le=16, description="tool rounds at most per request (then the loop stops)")
    tool_timeout_s: float = Field(5.0, gt=0, le=120, description="seconds a tool may run before its call fails")

    @model_validator(mode="after")
    def _model_or_upstream(self) -> "ServeSettings":
        if self.model is None and self.upstream is None:
            raise ValueError("give a model (run folder, model folder or imported name) or an upstream URL")
        if self.engine == "llama.cpp" and self.lora_modules:
            raise ValueError("lora_modules needs the torch engine: llama.cpp applies one adapter per context")
        if self.degrade_to_kb and not self.kb:
            raise ValueError("degrade_to_kb needs a knowledge base: give kb (--kb KB)")
        if self.tools != "none" and self.upstream:
            raise ValueError("tools (server-side) need a local engine; with upstream, clients send `tools` and "
                             "the upstream's tool parser answers them")
        return self
