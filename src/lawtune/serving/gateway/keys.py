"""API keys: a YAML file of hashed keys, each with a name and its own limits, re-read when it changes.

    lawtune keys add alice --keys-file keys.yaml --rpm 30      # prints the key once, stores its hash
    store = KeyStore(Path("keys.yaml"), admin_key=None)
    store.lookup("lt-…")  → ApiKey(name="alice", requests_per_minute=30, ...) or None

The file never holds a key, only `sha256` of it: keys are 256-bit random tokens, so a plain hash is as
good as a slow one and lets a lookup be one dict access. Layout:

    keys:
      - name: alice
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        requests_per_minute: 30       # optional: overrides the server default
        tokens_per_minute: 20000      # optional
        max_body_bytes: 65536         # optional: this key's request bodies (else --max-body-bytes)
      - name: ops
        sha256: ...
        admin: true                   # may call /admin/*

A changed file is picked up on the next request (one `stat` per lookup). The store **fails closed**: when
the file is deleted, no key of it is accepted any more (deleting it revokes them); when an edit breaks it, no
key of it is accepted until it parses again — a revoking edit with a typo must not leave the revoked key
valid. Either way every request with a key gets 503 `keys_unavailable` and each failed reload logs an ERROR
naming the file and the problem, so the operator notices at once; `--admin-key` keeps working.
`lawtune keys add/remove` validate, take an exclusive lock on `.FILE.lock` (two concurrent adds both land),
and keep the file's permissions (a new file is 0600). `RedactSecrets` is a logging filter that blanks
anything looking like a key or a bearer token in every log line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lawtune.errors import LawtuneError
from lawtune.fsutil import atomic_write_text

log = logging.getLogger("lawtune.gateway")
KEY_PREFIX = "lt-"


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    max_body_bytes: int | None = Field(None, ge=1024)
    admin: bool = False


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class ApiKey:
    """Who is calling (never the key itself): the name is what limits, metrics and logs use."""

    name: str
    requests_per_minute: int | None = None  # None: the server default
    tokens_per_minute: int | None = None
    admin: bool = False
    max_body_bytes: int | None = None  # None: the server's --max-body-bytes


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def read_keys_file(path: Path) -> dict[str, ApiKey]:
    """Parse and validate the file; every problem is one LawtuneError naming the file and the fix."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise LawtuneError(f"cannot read keys file {path}: {error.strerror}; create it with `lawtune keys add`")
    except yaml.YAMLError as error:
        raise LawtuneError(f"keys file {path} is not valid YAML: {error}")
    try:
        parsed = KeysFile.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise LawtuneError(f"keys file {path} is invalid: {problems}")
    by_hash: dict[str, ApiKey] = {}
    for entry in parsed.keys:
        if entry.sha256 in by_hash:
            raise LawtuneError(f"keys file {path}: key {entry.name!r} has the same hash as {by_hash[entry.sha256].name!r}")
        by_hash[entry.sha256] = ApiKey(entry.name, entry.requests_per_minute, entry.tokens_per_minute, entry.admin,
                                       entry.max_body_bytes)
    return by_hash


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock for a read-modify-write of the keys file (a sibling lock file: the keys file itself
    is replaced by a rename, so a lock on it would guard a file that is gone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_raw(path: Path) -> dict:
    if not path.exists():
        return {"keys": []}
    read_keys_file(path)  # refuse to edit a broken file
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw.setdefault("keys", [])
    return raw


def _write_raw(path: Path, raw: dict) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600  # kept; a new file readable by its owner only
    header = "# lawtune API keys (hashes only) — `lawtune keys add NAME --keys-file FILE` adds one\n"
    atomic_write_text(path, header + yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), file_mode=mode)


def remove_key(path: Path, name: str) -> None:
    """Revoke the key named `name` (a running server refuses it at its next request)."""
    with _locked(path):
        if not path.exists():
            raise LawtuneError(f"keys file {path} does not exist; nothing to remove")
        raw = _read_raw(path)
        kept = [entry for entry in raw["keys"] if entry.get("name") != name]
        if len(kept) == len(raw["keys"]):
            names = ", ".join(str(entry.get("name")) for entry in raw["keys"]) or "none"
            raise LawtuneError(f"keys file {path} has no key named {name!r} (names: {names}); `lawtune keys list` shows them")
        raw["keys"] = kept
        _write_raw(path, raw)


def add_key(path: Path, name: str, requests_per_minute: int | None = None, tokens_per_minute: int | None = None,
            admin: bool = False, max_body_bytes: int | None = None) -> str:
    """Append a fresh key to the file (created if missing) and return the key: the only time it is seen."""
    with _locked(path):
        return _add_key(path, name, requests_per_minute, tokens_per_minute, admin, max_body_bytes)


def _add_key(path: Path, name: str, requests_per_minute: int | None, tokens_per_minute: int | None,
             admin: bool, max_body_bytes: int | None = None) -> str:
    raw = _read_raw(path)
    if any(entry.get("name") == name for entry in raw["keys"]):
        raise LawtuneError(f"keys file {path} already has a key named {name!r}; pick another name or remove it")
    key = new_key()
    entry: dict[str, object] = {"name": name, "sha256": hash_key(key)}
    if requests_per_minute is not None:
        entry["requests_per_minute"] = requests_per_minute
    if tokens_per_minute is not None:
        entry["tokens_per_minute"] = tokens_per_minute
    if max_body_bytes is not None:
        entry["max_body_bytes"] = max_body_bytes
    if admin:
        entry["admin"] = True
    raw["keys"].append(entry)
    _write_raw(path, raw)
    return key


class KeyStore:
    """The keys in force: the keys file (reloaded when its mtime/size change) plus the admin key."""

    def __init__(self, path: Path | None, admin_key: str | None = None):
        self.path = path
        self._admin_hash = hash_key(admin_key) if admin_key else None
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[int, int] | None = None
        self.problem: str | None = None  # why no file key is accepted now (fail closed), for 503s and status
        if path is not None:
            self._keys = read_keys_file(path)  # a broken file at start is the user's error, said at once
            self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()  # type: ignore[union-attr]
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def _maybe_reload(self) -> None:
        if self.path is None:
            return
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        if stamp is None:
            error = LawtuneError(f"keys file {self.path} is gone (deleted or moved): every key of it is revoked "
                                 "until it is back; `lawtune keys add` creates a new one")
        else:
            try:
                self._keys, self.problem = read_keys_file(self.path), None
                log.info("keys file %s reloaded: %d keys", self.path, len(self._keys))
                return
            except LawtuneError as failed:
                error = failed
        # fail closed: a broken or missing file must not keep keys it may have revoked
        self._keys, self.problem = {}, str(error)
        log.error("REFUSING EVERY KEY OF THE KEYS FILE (fix it to serve again): %s", error)

    def lookup(self, key: str) -> ApiKey | None:
        digest = hash_key(key)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return ApiKey("admin", admin=True)
        self._maybe_reload()
        return self._keys.get(digest)

    def __len__(self) -> int:
        self._maybe_reload()
        return len(self._keys) + (1 if self._admin_hash else 0)


def bearer_token(authorization: str | None) -> str | None:
    """`Authorization: Bearer X` → X (None when absent or another scheme)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class RedactSecrets(logging.Filter):
    """Blank bearer tokens and lawtune keys in log messages and their arguments, whoever logs them."""

    _pattern = re.compile(r"(?i)(bearer\s+)\S+|" + re.escape(KEY_PREFIX) + r"[A-Za-z0-9_\-]{8,}")

    @classmethod
    def redact(cls, text: str) -> str:
        return cls._pattern.sub(lambda m: (m.group(1) or "") + "[REDACTED]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self.redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def install_log_redaction() -> None:
    """Attach the filter to the handlers of the root and uvicorn loggers (filters on a logger do not see
    records propagated from child loggers; filters on handlers do)."""
    flt = RedactSecrets()
    for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error", "lawtune"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(flt)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(flt)
