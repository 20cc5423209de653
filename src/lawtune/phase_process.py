"""Run one step of a command in a fresh Python process of its own, and report its peak with the caller's.

    from lawtune.phase_process import run_in_child
    done = run_in_child("train", train, config, overrides, resume="auto", error_log=out / "train-error.txt")
    done.value            # what train(...) returned (pickled back)
    done.line()           # "train: peak 3,412 MiB (its process 3,370 + this one 42)"

Why: memory a step frees stays in the process (glibc keeps freed blocks in its heap, torch keeps its caches, a
GGUF's dequantization leaves a fragmented heap), so in one process every step starts from what the earlier ones left
(`lawtune demo`'s compare started ~1.3 GiB above its own needs). A step in a child of its own starts from nothing and
gives everything back when it ends. The caller should hold no models: the peak of the two together is the child's
peak plus the caller's RSS, and that sum is what `line()` prints.

The child is `python -m lawtune.phase_process FD_IN FD_OUT` with the same interpreter, environment and sys.path;
the step (an importable function and its arguments) goes to it pickled through one pipe, and the outcome comes back
through another: the value, or a user error (`LawtuneError`, raised again here with its message), or another
exception (its traceback written to `error_log`, one clear `LawtuneError` here naming it), plus the child's peak
RSS. A child that dies without answering (killed, out of memory) is a `LawtuneError` with its signal or exit status.
Ctrl-C reaches the child too (same process group): both stop, and the caller sees `KeyboardInterrupt`.
Its stdin, stdout and stderr are the caller's, so progress bars and prints show as before.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lawtune.errors import LawtuneError

# how long a child gets to finish after Ctrl-C (it saves nothing more; a trainer's checkpoint is already on disk)
_INTERRUPT_GRACE_SECONDS = 30


@dataclass
class ChildDone:
    """A step's outcome: its value and the memory it took (MiB), the caller's own RSS included in `peak_mib`."""

    name: str
    value: Any
    child_peak_mib: float  # the child's own peak RSS (`memory.peak_rss_mib`: its VmHWM, the high-water mark of its life)
    parent_mib: float  # the caller's RSS while the child ran (the caller waits: its RSS does not move)

    @property
    def peak_mib(self) -> float:
        return self.child_peak_mib + self.parent_mib

    def line(self) -> str:
        return (f"{self.name}: peak {self.peak_mib:,.0f} MiB (its process {self.child_peak_mib:,.0f} + "
                f"this one {self.parent_mib:,.0f})")

    def record(self) -> dict:
        return {"name": self.name, "peak_rss_mib": round(self.peak_mib), "child_peak_rss_mib": round(self.child_peak_mib),
                "parent_rss_mib": round(self.parent_mib), "own_process": True}


def run_in_child(name: str, target: Callable[..., Any], *args: Any, error_log: Path | None = None,
                 **kwargs: Any) -> ChildDone:
    """`target(*args, **kwargs)` in a fresh process; its value and peak (see the module docstring). `target` must be
    a module-level function and its arguments and value picklable."""
    from lawtune.memory import rss_mib

    # two layers: the child sets the caller's sys.path (pytest's rootdir, a PYTHONPATH'd checkout) before it
    # unpickles the step, whose function is looked up by module name
    step = pickle.dumps({"target": target, "args": args, "kwargs": kwargs})
    job = pickle.dumps((list(sys.path), str(error_log) if error_log else None, step))
    to_child_read, to_child_write = os.pipe()
    from_child_read, from_child_write = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-m", "lawtune.phase_process", str(to_child_read),
                                  str(from_child_write)], pass_fds=(to_child_read, from_child_write))
    finally:
        os.close(to_child_read)
        os.close(from_child_write)
    try:
        with os.fdopen(to_child_write, "wb") as sink:
            sink.write(job)
        with os.fdopen(from_child_read, "rb") as source:
            answer = source.read()  # until the child closes its end (it answers once, then exits)
        status = child.wait()
    except KeyboardInterrupt:  # the child got the same SIGINT: let it stop, then stop here
        try:
            child.wait(timeout=_INTERRUPT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    parent = max(rss_mib() or 0.0, 0.0)
    if not answer:
        raise LawtuneError(f"the {name} step's process ended without an answer ({_describe_status(status)}); "
                           "run the command again: finished steps are reused")
    kind, payload, child_peak = pickle.loads(answer)
    if kind == "ok":
        return ChildDone(name, payload, child_peak, parent)
    if kind == "interrupted":
        raise KeyboardInterrupt
    if kind == "user_error":
        raise LawtuneError(payload)
    raise LawtuneError(f"the {name} step failed: {payload}" + (f" (traceback in {error_log})" if error_log else ""))


def _describe_status(status: int) -> str:
    if status < 0:
        number = -status
        try:
            label = signal.Signals(number).name
        except ValueError:
            label = f"signal {number}"
        hint = ": out of memory?" if number == signal.SIGKILL else ""
        return f"killed by {label}{hint}"
    return f"exit status {status}"


# ---- the child's side


def _child_main(fd_in: int, fd_out: int) -> int:
    with os.fdopen(fd_in, "rb") as source:
        job = source.read()
    answer = _run_job(job)
    try:
        message = pickle.dumps(answer)
    except Exception as error:  # noqa: BLE001  a value that cannot travel back: say so, not a silent child
        message = pickle.dumps(("error", f"its result could not be sent back ({type(error).__name__}: {error})",
                                answer[2]))
    try:
        with os.fdopen(fd_out, "wb") as sink:
            sink.write(message)
    except BrokenPipeError:  # the caller stopped listening (Ctrl-C there too): nothing left to tell
        return 1
    return 0


def _run_job(job: bytes) -> tuple[str, Any, float]:
    """Run the pickled step: ("ok", value | "user_error", message | "error", one-line summary | "interrupted", None;
    then the peak RSS in MiB)."""
    caller_path, error_log, step = pickle.loads(job)
    sys.path[:] = caller_path
    try:
        from lawtune.environment import configure

        configure()  # what the `lawtune` command sets up: no hub downloads, warning filters
        from lawtune.memory import tune_heap

        tune_heap()
        step = pickle.loads(step)
        value = step["target"](*step["args"], **step["kwargs"])
        return "ok", value, _peak()
    except LawtuneError as error:
        return "user_error", str(error), _peak()
    except KeyboardInterrupt:
        return "interrupted", None, _peak()
    except BaseException as error:  # noqa: BLE001  any other failure: one line to the caller, the traceback kept
        if error_log:
            try:
                Path(error_log).parent.mkdir(parents=True, exist_ok=True)
                Path(error_log).write_text(traceback.format_exc(), encoding="utf-8")
            except OSError:
                traceback.print_exc()
        else:
            traceback.print_exc()
        return "error", f"{type(error).__name__}: {error}", _peak()


def _peak() -> float:
    from lawtune.memory import peak_rss_mib

    return peak_rss_mib()


if __name__ == "__main__":
    sys.exit(_child_main(int(sys.argv[1]), int(sys.argv[2])))
