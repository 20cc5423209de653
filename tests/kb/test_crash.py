"""SIGKILL at random instants during `lawtune kb add`, `lawtune kb build` and `lawtune keys add` (issue 25's
crash test): afterwards the previous state or the new one is intact — never a mix — and the next run sweeps
what the killed one left. (Folder writers — export, checkpoints, model import — share `fsutil.atomic_dir`,
crash-tested in tests/test_fsutil.py.)

    .venv/bin/pytest tests/kb/test_crash.py -q
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lawtune

SRC = Path(lawtune.__file__).resolve().parents[1]
pytestmark = pytest.mark.integration  # subprocesses killed at random instants


def lawtune_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen([sys.executable, "-m", "lawtune.cli", *args], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    process.started = time.monotonic()
    return process


def kill_at_random(process: subprocess.Popen, rng: random.Random, within_s: float, started=None) -> bool:
    """SIGKILL a random delay after `started()` first holds (default: at once) unless it finished first; True
    when it was killed. `started` (e.g. "its temporary file exists") aims the kill past the imports."""
    while started is not None and process.poll() is None and not started():
        time.sleep(0.001)
    deadline = time.monotonic() + (rng.uniform(0.0 if started else 0.05, within_s) if within_s else 0.0)
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    killed = process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return killed


def qa_file(folder: Path, count: int) -> Path:
    path = folder / "qa.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            turns = [{"role": "user", "content": f"碧玉蜗牛第{i}号的问题"}, {"role": "assistant", "content": f"碧玉蜗牛第{i}号的回答"}]
            out.write(json.dumps({"conversations": turns}, ensure_ascii=False) + "\n")
    return path


def test_kb_add_killed_at_random_leaves_all_or_nothing(writable_kb, tmp_path):
    from lawtune.kb import open_store
    from lawtune.kb.retrieval import Retriever

    location = str(getattr(writable_kb, "path", None) or writable_kb.url)
    qa = qa_file(tmp_path, 4000)
    started = time.monotonic()  # one whole add first: how long one takes here and now aims the kills
    assert lawtune_process("kb", "add", location, str(qa)).wait(timeout=300) == 0
    took = time.monotonic() - started
    before = writable_kb.count().get("qa", 0)
    rng, killed, rounds = random.Random(1), 0, 0
    while rounds < 4 or (not killed and rounds < 10):  # at least 4 kills aimed; more until one lands
        rounds += 1
        process, delay = lawtune_process("kb", "add", location, str(qa)), rng.uniform(0.4 * took, 0.95 * took)
        if kill_at_random(process, rng, 0.0, started=lambda: time.monotonic() - process.started > delay):
            killed += 1
        else:  # it finished first (the first add ran on a colder or busier machine): aim the next one earlier
            took = min(took, time.monotonic() - process.started)
        with open_store(location) as store:
            now = store.count().get("qa", 0)
            assert (now - before) % 4000 == 0, (before, now)  # whole files only
            if now > before:
                assert Retriever(store).search("碧玉蜗牛第3999号的问题", k=1)[0].item.question == "碧玉蜗牛第3999号的问题"
            if hasattr(store, "path"):
                assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert killed >= 1


def test_kb_build_killed_at_random_keeps_the_old_kb_and_the_next_build_sweeps(tmp_path):
    from lawtune.kb import open_store
    from lawtune.kb.build import build

    out = tmp_path / "kb.sqlite"
    law = tmp_path / "示例法(2020-01-01).md"
    law.write_text("# 中华人民共和国示例法\n\n<!-- INFO END -->\n\n第一条 示例条文。\n", encoding="utf-8")
    build([law], out)
    bundled = build([], tmp_path / "reference" / "kb.sqlite")  # what a finished --force build holds
    rng, killed = random.Random(2), 0
    for _ in range(4):  # --force over it with the bundled laws (a second or two), killed midway
        building = lambda: any(tmp_path.glob(".kb.sqlite.*.tmp"))  # noqa: E731
        killed += kill_at_random(lawtune_process("kb", "build", "-o", str(out), "--force"), rng, 0.5, building)
        with open_store(out) as store:
            assert store.count() in ({"article": 1}, bundled)  # the old KB or the new one, whole
            assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert killed >= 1
    build([law], out)  # a finished build sweeps the killed ones' temporaries
    made = sorted(p.name for p in tmp_path.iterdir() if p.name != "lawtune-home")  # (the test's LAWTUNE_HOME)
    assert made == sorted(["kb.sqlite", law.name, "reference"])


def test_keys_add_killed_at_random_keeps_a_valid_file(tmp_path):
    from lawtune.serving.gateway.keys import add_key, read_keys_file

    keys_file = tmp_path / "keys.yaml"
    add_key(keys_file, "first")
    rng = random.Random(3)
    for i in range(8):
        writing = lambda: any(tmp_path.glob(".keys.yaml.*.tmp"))  # noqa: E731
        kill_at_random(lawtune_process("keys", "add", f"user{i}", "--keys-file", str(keys_file)), rng, 0.002, writing)
        names = [key.name for key in read_keys_file(keys_file).values()]  # always parses: old or new
        assert names[0] == "first" and len(set(names)) == len(names)
    add_key(keys_file, "last")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["keys.yaml"]
