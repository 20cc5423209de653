"""Resident memory of this process: now, at its peak, and per phase of a command.

    from lawtune.memory import peak_rss_mib, rss_mib, Phases, release_memory, trim_heap, tune_heap
    tune_heap()           # at a process's start (the `lawtune` command does): with LAWTUNE_MMAP_THRESHOLD_MIB set, big freed blocks leave the RSS
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    phases = Phases()
    with phases("train"):
        ...
    phases.lines()        # ["train: peak 2,310 MiB, now 1,250 MiB"]

The peak of the whole process is the kernel's high-water mark (Linux: VmHWM in /proc/self/status; elsewhere
`getrusage(RUSAGE_SELF).ru_maxrss`), which needs nothing (no psutil). A
phase's own peak needs the kernel's high-water mark reset when the phase starts (Linux: writing 5 to
/proc/self/clear_refs, which resets `ru_maxrss` too); the process peak before every reset is kept here, so
`peak_rss_mib()` stays the peak of the whole process. Where the reset is not allowed (not Linux, a locked-down
/proc), a phase's peak is the process peak so far, and says so.

Only this process knows that earlier peak: a tool outside it that reads the kernel's counter (`/usr/bin/time -v`'s
"Maximum resident set size", a parent's `wait4`) sees the peak since the last reset (a command with phases in one
process, such as `benchmarks/memory_profile.py`: read its printed `process peak` line). `lawtune demo` runs each
step in a process of its own instead (`lawtune.phase_process`) and prints each step's peak as that process's plus
its own; `time -v` then reports the largest single process's peak, not that sum.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator

_MIB = 1024 * 1024
_peak_before_reset = 0.0  # MiB: the process peak before the last high-water-mark reset


def rss_mib() -> float | None:
    """The resident set size now (Linux /proc/self/statm); None where there is no such file."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize() / _MIB


def _kernel_peak_mib() -> float:
    """The kernel's high-water mark of this process's RSS: VmHWM (Linux /proc/self/status), else ru_maxrss (KiB on
    Linux, bytes on macOS). VmHWM first because ru_maxrss also counts the memory of the process this one was
    before exec: a child started by a big parent (vfork shares the parent's pages) reports the parent's peak."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / _MIB if sys.platform == "darwin" else value / 1024


def peak_rss_mib() -> float:
    """The largest resident set size this process has had so far (the kernel updates its high-water mark
    lazily, so the RSS now can be a little above it: both are taken)."""
    return max(_kernel_peak_mib(), _peak_before_reset, rss_mib() or 0.0)


def reset_peak() -> bool:
    """Start a new high-water mark at the current RSS (the process peak is remembered); False if not allowed."""
    global _peak_before_reset
    peak = peak_rss_mib()
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    _peak_before_reset = peak
    return True


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL("libc.so.6").malloc_trim
    return None


def trim_heap() -> None:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim; nothing elsewhere). glibc keeps freed
    blocks under 32 MiB in its arenas, so after many mid-sized tensors the RSS stays high although nothing
    holds them, and blocks left between live ones let it grow from one training step to the next."""
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)


# glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8
# `LAWTUNE_MMAP_THRESHOLD_MIB=N` fixes glibc's mmap threshold at N MiB: blocks of that size and more get pages of
# their own (mmap) and give them back when freed. glibc's default threshold starts at 128 KiB and rises to the
# largest block freed, up to 32 MiB, so after the first big free every activation of a few MiB (a layer's
# 4 × 793 × 640 bf16 hidden states are 4 MB) lives in the heap, and the holes live blocks leave between them keep
# the RSS up within a step, where malloc_trim after the step is too late.
# Off by default, because those blocks are then faulted in fresh (zeroed pages) each time where the heap reused
# warm ones. Measured 2026-12-07 (AVX512-BF16 EPYC, quiet, 10 demo training steps, `lawtune train`): glibc's
# default 152 s, peak 3,094 MiB; 1 MiB 260 s (1.71×; sys 16 → 192 s, minor faults 5.3 M → 72.5 M), peak 2,450 MiB;
# 8 MiB 146 s, peak 3,054 MiB. So 1 MiB buys ~640 MiB for 1.7× the time: a choice for a machine short of memory.
SUGGESTED_THRESHOLD_MIB = 1
THRESHOLD_VARIABLE = "LAWTUNE_MMAP_THRESHOLD_MIB"
# Heaps for threads (glibc makes up to 8 per core): torch's worker threads allocate too, and each arena keeps
# its own freed blocks.
ARENA_MAX = 2


def tune_heap() -> bool:
    """Set glibc's allocator for big tensors in this process, from now on, when `LAWTUNE_MMAP_THRESHOLD_MIB` asks
    for it (its threshold, and `ARENA_MAX`); False when it is unset or 0 (the default: glibc's allocator left alone,
    see the comment above) and where that is not glibc. Where a block's memory comes from never changes what it
    holds.

    mallopt, not the MALLOC_MMAP_THRESHOLD_ / MALLOC_ARENA_MAX environment variables: glibc reads those once,
    when the process starts, so the `lawtune` command would have to re-execute itself to use them.
    `LAWTUNE_MMAP_THRESHOLD_MIB`: whole MiB, at most 32; unset or 0 leaves the allocator alone."""
    import os

    given = os.environ.get(THRESHOLD_VARIABLE, "").strip()
    if given and (not given.isdigit() or int(given) > 32):
        from lawtune.errors import LawtuneError

        raise LawtuneError(f"{THRESHOLD_VARIABLE}={given!r}: give whole MiB from 0 (glibc's default) to 32 (glibc's most)")
    threshold = int(given) << 20 if given else 0
    if threshold == 0:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_ARENA_MAX, ARENA_MAX))


_MADV_PAGEOUT = 21  # Linux ≥ 5.4: reclaim these pages now; never changes what they hold


def _file_mapping(address: int) -> str | None:
    """The file mapped at `address` in this process (/proc/self/maps), or None (anonymous memory, not Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                start, end = (int(part, 16) for part in fields[0].split("-"))
                if start <= address < end:
                    path = fields[5].strip() if len(fields) > 5 else ""
                    return path if path.startswith("/") else None
    except (OSError, ValueError, IndexError):
        return None
    return None


def page_out(tensor) -> int:
    """Let the kernel reclaim the resident pages of a tensor that is a view of a memory-mapped file (weights
    loaded from .safetensors are); returns the bytes asked for, 0 when the tensor is not file-backed or the
    kernel cannot (then nothing happens).

    For a weight that was read once in full (to make a copy of it in another dtype) and is afterwards read only
    here and there, this takes it out of the RSS: pages read again come back from the file. MADV_PAGEOUT never
    changes contents: a page this process wrote is not dropped (it has no file copy: it stays, or goes to swap),
    so the tensor reads the same before and after."""
    storage = tensor.untyped_storage()
    if tensor.device.type != "cpu" or storage.nbytes() == 0 or _file_mapping(storage.data_ptr()) is None:
        return 0
    page = resource.getpagesize()
    start = -(-storage.data_ptr() // page) * page  # whole pages inside the storage only
    end = (storage.data_ptr() + storage.nbytes()) // page * page
    if end <= start:
        return 0
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return end - start if libc.madvise(start, end - start, _MADV_PAGEOUT) == 0 else 0
    except (OSError, AttributeError):
        return 0


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (`trim_heap`)."""
    gc.collect()
    trim_heap()


@dataclass
class PhaseMemory:
    name: str
    start_mib: float | None  # RSS when the phase began
    peak_mib: float  # the highest RSS within the phase (the process peak so far when `own_peak` is False)
    end_mib: float | None  # RSS when it ended
    seconds: float
    own_peak: bool

    def line(self) -> str:
        peak = f"peak {self.peak_mib:,.0f} MiB" + ("" if self.own_peak else " (process so far)")
        now = f", now {self.end_mib:,.0f} MiB" if self.end_mib is not None else ""
        return f"{self.name}: {peak}{now}"

    def record(self) -> dict:
        return {"name": self.name, "rss_start_mib": _round(self.start_mib), "peak_rss_mib": round(self.peak_mib),
                "rss_end_mib": _round(self.end_mib), "seconds": round(self.seconds, 1), "own_peak": self.own_peak}


def _round(value: float | None) -> int | None:
    return None if value is None else round(value)


class Phases:
    """Each phase's peak and end RSS, in the order they ran; `with phases("name"): ...`."""

    def __init__(self) -> None:
        self.done: list[PhaseMemory] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        own = reset_peak()
        start, started = rss_mib(), time.perf_counter()
        try:
            yield
        finally:
            end = rss_mib()
            peak = max(_kernel_peak_mib(), end or 0.0) if own else peak_rss_mib()
            self.done.append(PhaseMemory(name, start, peak, end, time.perf_counter() - started, own))

    def lines(self) -> list[str]:
        return [phase.line() for phase in self.done] + [f"process peak {peak_rss_mib():,.0f} MiB"]

    def records(self) -> list[dict]:
        return [phase.record() for phase in self.done]
