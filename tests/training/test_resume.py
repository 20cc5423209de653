"""Resume: SIGKILL mid-run then `--resume auto` reaches the same final step; half-written checkpoints never count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lawtune.errors import LawtuneError
from lawtune.training.resume import plan_resume, tidy_run_dir
from lawtune.training.train import run

from training_helpers import tiny_config


def test_resume_after_sigkill_reaches_the_final_step(tiny_model_dir, conversation_files, tmp_path):
    config = tiny_config(tmp_path, tiny_model_dir, conversation_files,
                         training_args={"max_steps": 60, "save_steps": 2, "logging_steps": 2, "eval_strategy": "no",
                                        "save_total_limit": 3})
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "lawtune.cli", "train", str(config), "--resume", "none"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "LAWTUNE_HOME": str(tmp_path)})
    try:
        deadline = time.monotonic() + 240
        while not list(run_dir.glob("checkpoint-*/lawtune_complete.json")):
            assert process.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # A checkpoint the Trainer was still writing when killed: files, but no completion marker.
    half = run_dir / "checkpoint-58"
    half.mkdir(exist_ok=True)
    (half / "adapter_model.safetensors").write_bytes(b"truncated")
    last_complete = plan_resume(run_dir, "auto")
    assert last_complete is not None and last_complete.name != "checkpoint-58"

    run(config, resume="auto")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["resumed_from"] == last_complete.name
    assert info["final_step"] == 60
    # the half-written folder was removed before resuming; the resumed run wrote a real checkpoint-58
    assert (half / "lawtune_complete.json").is_file()
    assert (half / "adapter_model.safetensors").read_bytes() != b"truncated"
    state = json.loads((run_dir / f"checkpoint-{info['final_step']}" / "trainer_state.json").read_text())
    assert state["global_step"] == info["final_step"]
    steps = [e["step"] for e in (json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in e]
    assert steps == sorted(set(steps)), "resumed events must not repeat steps"


def test_resume_modes_pick_only_complete_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    for step, complete in ((10, True), (20, True), (30, False)):
        folder = run_dir / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / "lawtune_complete.json").write_text("{}")
    (run_dir / "run.json").write_text("{}")
    assert plan_resume(run_dir, "auto") == run_dir / "checkpoint-20"
    assert plan_resume(run_dir, "10") == run_dir / "checkpoint-10"
    assert plan_resume(run_dir, "none") is None
    with pytest.raises(LawtuneError, match=r"no complete checkpoint-30 .*complete checkpoints: 10, 20"):
        plan_resume(run_dir, "30")
    with pytest.raises(LawtuneError, match="is not auto, none or a step number"):
        plan_resume(run_dir, "latest")
    tidy_run_dir(run_dir, run_dir / "checkpoint-10")
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == ["checkpoint-10"]


def test_output_dir_with_foreign_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LawtuneError, match="not a lawtune run"):
        plan_resume(tmp_path, "auto")
