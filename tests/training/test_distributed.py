"""The same `lawtune train` under `torchrun --nproc_per_node 2` and `accelerate launch` (gloo on CPU), tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from training_helpers import tiny_config


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


LAUNCHERS = {
    "torchrun": lambda: [_tool("torchrun"), "--nproc_per_node", "2", "--master_port", "29533"],
    # accelerate's --cpu launches one process (or goes through mpirun); --multi_gpu starts the torchrun-style
    # launcher, and lawtune picks gloo on a machine without CUDA.
    "accelerate": lambda: [_tool("accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29534"],
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_process_cpu_run(tiny_model_dir, conversation_files, tmp_path, launcher):
    config = tiny_config(tmp_path, tiny_model_dir, conversation_files,
                         training_args={"max_steps": 6, "eval_steps": 3, "save_steps": 3, "per_device_train_batch_size": 2})
    command = [*LAUNCHERS[launcher](), "-m", "lawtune.cli", "train", str(config), "--resume", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAWTUNE_HOME": str(tmp_path)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["world_size"] == 2 and info["final_step"] == 6
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((run_dir / "best" / "best.json").read_text())["step"] in (3, 6)
    # one process writes the logs: each step appears once
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(set(steps))
