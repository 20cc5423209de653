"""lawtune.phase_process: a step in a fresh process of its own; its value, its failures and its peak (child + caller)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lawtune.errors import LawtuneError
from lawtune.phase_process import run_in_child

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS from /proc is Linux's")


# ---- steps run in the child (module level: the child imports this module by name)


def touch_and_return(mib: int, tag: str) -> dict:
    block = bytearray(mib * 2**20)
    for offset in range(0, len(block), 4096):  # resident only once touched
        block[offset] = 1
    return {"tag": tag, "pid": os.getpid()}


def user_error() -> None:
    raise LawtuneError("no such model folder /nowhere; import one with `lawtune model import`")


def crash() -> None:
    raise ValueError("boom in the step")


def killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def wait_a_minute(ready: str) -> None:
    Path(ready).write_text("started")
    time.sleep(60)


# ----


@linux
def test_a_step_runs_in_another_process_and_its_peak_is_its_own_plus_the_callers():
    done = run_in_child("big", touch_and_return, 300, tag="x")
    assert done.value["tag"] == "x" and done.value["pid"] != os.getpid()
    assert done.child_peak_mib >= 300  # the child's 300 MiB block, not the caller's memory
    assert 10 < done.parent_mib  # this process's RSS, added to the child's
    assert done.peak_mib == done.child_peak_mib + done.parent_mib
    assert done.line().startswith("big: peak ") and "its process" in done.line()
    assert done.record()["peak_rss_mib"] == round(done.peak_mib)
    held = bytearray(300 * 2**20)
    for offset in range(0, len(held), 4096):  # this process now holds 300 MiB more
        held[offset] = 1
    small = run_in_child("small", touch_and_return, 8, tag="y")
    # a fresh process: nothing inherited from the big step, nor counted from this one (ru_maxrss would count the
    # caller's pages it shared before exec; the child's own high-water mark does not)
    assert small.child_peak_mib < done.child_peak_mib - 200 and small.child_peak_mib < 250
    assert small.parent_mib >= done.parent_mib + 250


def test_a_user_error_in_the_child_is_the_same_error_here():
    with pytest.raises(LawtuneError, match=r"^no such model folder /nowhere; import one with `lawtune model import`$"):
        run_in_child("import", user_error)


def test_another_failure_is_one_clear_error_and_its_traceback_goes_to_the_log(tmp_path):
    log = tmp_path / "logs" / "train-error.txt"
    with pytest.raises(LawtuneError) as raised:
        run_in_child("train", crash, error_log=log)
    assert str(raised.value) == f"the train step failed: ValueError: boom in the step (traceback in {log})"
    text = log.read_text(encoding="utf-8")
    assert text.startswith("Traceback") and "in crash" in text


@linux
def test_a_child_killed_without_answering_is_a_clear_error():
    with pytest.raises(LawtuneError, match=r"the compare step's process ended without an answer \(killed by SIGKILL: "
                                           r"out of memory\?\); run the command again"):
        run_in_child("compare", killed)


@linux
def test_ctrl_c_stops_the_child_and_the_caller_without_a_traceback(tmp_path):
    ready = tmp_path / "ready"
    # SIGINT's default handler first: a shell starts background jobs with SIGINT ignored, and so would this caller be
    caller = ("import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from lawtune.phase_process import run_in_child\nfrom test_phase_process import wait_a_minute\n"
              f"try:\n    run_in_child('train', wait_a_minute, {str(ready)!r})\n"
              "except KeyboardInterrupt:\n    print('interrupted', file=sys.stderr)\n    sys.exit(130)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", caller], env=env, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # its own process group, as a terminal's foreground job
    deadline = time.monotonic() + 120
    while not ready.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert ready.exists(), process.stderr.read() if process.poll() is not None else "the child did not start"
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and time.monotonic() - started < 30
    assert stderr.strip() == "interrupted", stderr
