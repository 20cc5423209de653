"""Atomic file and folder writes, and content hashes.

Every output lawtune writes goes through here so that a Ctrl-C or a crash never leaves a half-written
file behind: data is written to a temporary sibling and renamed into place (rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                file_mode: int | None = None) -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; rename it over `path` only on success.

    `file_mode`: the new file's permissions (default: what the umask gives any new file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(path)  # what a killed writer of this file left
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes 0600 files; outputs get normal permissions unless told otherwise
    os.chmod(tmp, file_mode if file_mode is not None else 0o666 & ~_current_umask())
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A free temporary sibling of `path`, for a writer that opens its file by name (SQLite); renamed over
    `path` only on success, removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(path)  # what a killed writer of this path left (the pid in the name says whose)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # the writer creates it: SQLite refuses an existing empty file as a database
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):  # SQLite's sidecars too
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise


def _current_umask() -> int:
    """The process umask, read without changing it: `os.umask` can only be read by setting it, and for that
    moment every other thread would create files with the temporary mask (world-writable with 0)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _UMASK_AT_IMPORT


def _umask_at_import() -> int:  # the fallback where /proc is missing, read once while importing
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def atomic_write_text(path: str | Path, text: str, file_mode: int | None = None) -> None:
    with atomic_open(path, "w", file_mode=file_mode) as handle:
        handle.write(text)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `path` in one atomic step.

    A reader therefore sees either no folder, the old one or the complete new one — never a partial one and,
    even if the process is killed (SIGKILL) at any instant, never none where there was one: an existing folder
    is swapped with the new one by `renameat2(RENAME_EXCHANGE)` (Linux), so no moment exists without `path`.
    Where the exchange is unavailable, two renames through `.NAME.old`, and the next `atomic_dir` of the same
    path puts a `.NAME.old` left without its folder back. Temporary folders of killed writers are swept then.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _normal_modes(tmp)
        if path.exists():
            if _exchange(tmp, path):  # tmp now holds the old folder
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: this filesystem or kernel cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def _recover(path: Path) -> None:
    """Undo what a writer killed mid-replace left: `.NAME.old` without NAME goes back; temp folders and
    `.NAME.old` of writers no longer running are removed (a live writer's — its pid in the name — stay)."""
    old = path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists():
        os.replace(old, path)
    elif old.exists():
        shutil.rmtree(old, ignore_errors=True)
    sweep_temporaries(path)


def sweep_temporaries(path: Path) -> None:
    """Remove the temporary siblings (`.NAME.PID.XXXXXXXX.tmp`, with SQLite's `-wal`/`-shm`/`-journal`) that
    writers of `path` killed before finishing left behind; a running writer's (its pid alive) stay."""
    ours = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp(?:-wal|-shm|-journal)?")
    for leftover in path.parent.glob(f".{path.name}.*.tmp*"):
        match = ours.fullmatch(leftover.name)
        if not match:
            continue
        if match.group(1) is not None:
            dead = not _running(int(match.group(1)))
        else:  # made before temporaries carried their writer's pid: a day old is surely abandoned
            dead = time.time() - leftover.stat().st_mtime > 86_400
        if dead:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _normal_modes(folder: Path) -> None:
    """mkdtemp makes a 0700 folder and safetensors writes 0600 files: a finished output (a run's adapter,
    an imported model, an export) gets the modes the umask gives any other file, so other users (and a
    server running as another user) can read it."""
    mask = _current_umask()
    for item in [folder, *folder.rglob("*")]:
        if item.is_symlink():
            continue
        wanted = (0o777 if item.is_dir() else 0o666) & ~mask
        if item.is_dir() or item.stat().st_mode & 0o777 == 0o600:
            item.chmod(wanted if item.is_dir() else wanted | (item.stat().st_mode & 0o111))


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(folder: str | Path, patterns: tuple[str, ...] = ("*.safetensors", "*.bin", "*.gguf", "*.json")) -> str:
    """One hash over the weight and config files of a model folder (names and contents, sorted)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    for file in files:
        digest.update(file.name.encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()
