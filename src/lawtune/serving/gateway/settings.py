"""Settings of the gateway (admission control in front of any engine): keys, limits, queue, switch, breaker.

    settings = GatewaySettings(keys_file="keys.yaml", queue_size=8, pause_file="/run/lawtune/paused")
    gateway = Gateway(settings, engine)          # lawtune.serving.gateway.admission

`lawtune serve` fills these from its options (`--keys-file`, `--admin-key`, `--rate-limit-storage`,
`--queue-size`, `--open`, `--pause-file`, ...). Limits live in the schema, not in if-chains.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from lawtune.errors import LawtuneError

# What a paused service answers (and what the chat page shows) unless the operator configures another notice.
DEFAULT_PAUSE_NOTICE = "法律助手暂时停止服务，请稍后再试。紧急法律问题请直接联系法务部门。"
MIN_ADMIN_KEY_CHARS = 16
FAILED_ADMIN_LOGINS_PER_MINUTE = 10  # per client address; more → 429 (the admin key may be a chosen phrase)
# A key over its requests/minute gets its 429 after this pause: a client that ignores Retry-After and loops
# then waits instead of spinning the server (tuned on: benchmarks/hostile_load.py). At most this many refusals
# of one key are held at once; past that they are answered at once.
REFUSAL_HOLD_S = 1.0
MAX_HELD_REFUSALS_PER_KEY = 16
DEFAULT_DEGRADED_NOTICE = "法律助手暂时不可用（模型服务异常），正在自动恢复，请稍后再试。"
# A request's deadline from arrival, queue wait + generation (`lawtune serve --timeout`, ServeSettings): the one
# default; GatewaySettings.request_timeout_s overrides it for the gateway alone.
DEFAULT_REQUEST_TIMEOUT_S = 300.0


class GatewaySettings(BaseModel):
    """Everything the gateway needs; defaults are safe for one CPU replica."""

    model_config = ConfigDict(extra="forbid")

    # --- who may call --------------------------------------------------------------------------------
    keys_file: Path | None = None  # YAML of hashed keys (see keys.py); re-read when it changes
    admin_key: SecretStr | None = None  # plaintext admin key (CLI/env); keys-file entries may also be admin
    open_access: bool = False  # no key needed; only allowed when the server binds a loopback address

    # --- how much -------------------------------------------------------------------------------------
    requests_per_minute: int | None = Field(60, ge=1)  # per key, unless the key sets its own; None: no limit
    tokens_per_minute: int | None = Field(40_000, ge=1)  # prompt + max_tokens charged up front, corrected after
    rate_limit_storage: str = "memory://"  # or redis://host:port/db so several replicas share one budget

    # --- how many at once ------------------------------------------------------------------------------
    max_concurrency: int | None = Field(None, ge=1, le=4096)  # requests in the engine at once (None: its batch size)
    queue_size: int = Field(16, ge=0, le=100_000)  # requests waiting for a slot; one more → 503 at once
    request_timeout_s: float | None = Field(None, gt=0)  # deadline: queue wait + generation (None: the server's)
    max_body_bytes: int = Field(1_000_000, ge=1024)  # larger request bodies → 413
    retry_after_s: int = Field(2, ge=1)  # Retry-After for queue-full / paused answers

    # --- the switch (服务降级) and the breaker --------------------------------------------------------
    paused: bool = False  # start paused
    pause_file: Path | None = None  # the file exists → paused (its text, if any, is the notice)
    pause_notice: str = DEFAULT_PAUSE_NOTICE
    degraded_notice: str = DEFAULT_DEGRADED_NOTICE
    breaker_failures: int = Field(5, ge=1)  # consecutive engine failures/timeouts that open the breaker
    breaker_cooldown_s: float = Field(30.0, gt=0)  # open this long, then one probe request (half-open)

    @field_validator("admin_key")
    @classmethod
    def _long_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(f"the admin key must be at least {MIN_ADMIN_KEY_CHARS} characters (it guards pause and "
                             "resume); make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
            raise ValueError(f"rate_limit_storage {value!r} is not memory:// or redis://HOST:PORT[/DB]")
        return value

    def check_bind(self, host: str) -> None:
        """Open mode (no keys) is refused unless only this machine can reach the server."""
        if self.open_access and not is_loopback(host):
            raise LawtuneError(
                f"--open serves without API keys, which is only allowed on a loopback address, not {host!r}; "
                "bind --host 127.0.0.1, or drop --open and pass --keys-file / --admin-key")
        if not self.open_access and self.keys_file is None and self.admin_key is None:
            raise LawtuneError(
                "no API keys configured: pass --keys-file FILE (create keys with `lawtune keys add NAME "
                "--keys-file FILE`), or --open to serve without keys on 127.0.0.1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
