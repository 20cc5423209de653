"""Atomic writers under SIGKILL (issue 25 item 10 and the crash test): a folder replaced by `atomic_dir` is,
after a kill at any instant, the old folder or the new one — never missing, never a mix — and the next write
sweeps what the killed one left; reading the umask never changes it.

    .venv/bin/pytest tests/test_fsutil.py -q
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import lawtune
from lawtune.fsutil import _current_umask, atomic_dir

SRC = Path(lawtune.__file__).resolve().parents[1]
pytestmark = pytest.mark.integration  # subprocesses killed at random instants

# a writer that replaces FOLDER again and again with a folder of 20 files all holding the same generation
WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from lawtune.fsutil import atomic_dir

    folder = Path(sys.argv[1])
    generation = int(sys.argv[2])
    while True:
        generation += 1
        with atomic_dir(folder) as tmp:
            for i in range(20):
                (tmp / f"part{i}.txt").write_text(str(generation) * 1000)
        print(generation, flush=True)
""")


def folder_state(folder: Path) -> set[str]:
    """The generations a folder's files hold (exactly one when it is whole)."""
    files = sorted(folder.iterdir())
    assert len(files) == 20, [f.name for f in files]
    return {f.read_text()[:1] for f in files} if files else set()


def test_atomic_dir_survives_sigkill_at_random_instants(tmp_path):
    folder = tmp_path / "out"
    with atomic_dir(folder) as tmp:
        for i in range(20):
            (tmp / f"part{i}.txt").write_text("0" * 1000)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    rng = random.Random(0)
    for trial in range(12):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), "0"], env=env,
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline()  # it replaced the folder at least once: now kill it mid-stream
        time.sleep(rng.uniform(0.0, 0.05))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
        # before any recovery: the folder is there and whole (RENAME_EXCHANGE leaves no gap)
        assert folder.is_dir() and len(folder_state(folder)) == 1
        with atomic_dir(folder) as tmp:  # the next write sweeps the killed writer's leftovers
            for i in range(20):
                (tmp / f"part{i}.txt").write_text("9" * 1000)
        assert folder_state(folder) == {"9"}
        assert [p.name for p in tmp_path.iterdir()] == ["out"], list(tmp_path.iterdir())


def test_a_folder_left_as_old_by_a_kill_between_two_renames_is_put_back(tmp_path):
    """The fallback (no RENAME_EXCHANGE): killed after `out → .out.old`, before `tmp → out`."""
    folder, old = tmp_path / "out", tmp_path / ".out.old"
    old.mkdir()
    (old / "data.txt").write_text("previous")
    stale = tmp_path / f".out.{2**22 + 12345}.abcd1234.tmp"  # a dead writer's half-written folder
    stale.mkdir()
    (stale / "data.txt").write_text("half")
    live = tmp_path / f".out.{os.getpid()}.efgh5678.tmp"  # a running writer's: kept
    live.mkdir()
    try:
        with atomic_dir(folder) as tmp:
            assert (folder / "data.txt").read_text() == "previous"  # restored before anything else
            (tmp / "data.txt").write_text("new")
        assert (folder / "data.txt").read_text() == "new"
        assert not old.exists() and not stale.exists() and live.exists()
    finally:
        live.rmdir()


def test_reading_the_umask_never_changes_it(monkeypatch):
    """os.umask can only be read by setting it: for that moment other threads made world-writable files."""
    expected = os.umask(0o027)
    os.umask(0o027)
    try:
        calls = []
        monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or 0o027)
        assert _current_umask() == 0o027 and calls == []
    finally:
        monkeypatch.undo()
        os.umask(expected)
    made = []

    def create(i):  # threads creating files while others read the umask: every file gets the real mask
        for j in range(50):
            _current_umask()
            path = Path(f"/tmp/lawtune-umask-{os.getpid()}-{i}-{j}")
            path.write_text("x")
            made.append(path)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert all(path.stat().st_mode & 0o777 == 0o666 & ~expected for path in made)
    finally:
        for path in made:
            path.unlink()
