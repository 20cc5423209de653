"""Shared fixtures: the tiny model (built once per session) and sample conversations."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny_model import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Gemma 3 model folder (2 layers, width 16) with a BPE tokenizer trained on legal text."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(autouse=True)
def _isolated_lawtune_home(tmp_path, monkeypatch):
    """Each test gets its own model cache, so nothing leaks between tests or into ~/.cache."""
    monkeypatch.setenv("LAWTUNE_HOME", str(tmp_path / "lawtune-home"))


@pytest.fixture(scope="session")
def tiny_run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A run folder from a real short `lawtune train` of the tiny model, with `adapter/` and `best/`.

    Six steps on 24 conversations from the fixture corpus (dev loss on 4 rows every 3 steps): a few seconds.
    """
    import json

    import yaml

    from lawtune.training.train import run

    folder = tmp_path_factory.mktemp("tiny-run")
    lines = [l.strip() for l in (Path(__file__).parent / "fixtures" / "corpus.txt").read_text(encoding="utf-8").splitlines() if l.strip()]
    rows = [{"conversations": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in zip(lines[0::2], lines[1::2])]
    for name, part in (("train", rows[:24]), ("dev", rows[56:60])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    config = {
        "model": {"name_or_path": str(tiny_model_dir), "chat_template": "gemma"},
        "data_config": {"train_file": str(folder / "train.jsonl"), "val_file": str(folder / "dev.jsonl")},
        "max_input_length": 48, "max_output_length": 48,
        "training_args": {"output_dir": str(folder / "run"), "max_steps": 6, "learning_rate": 3e-2, "logging_steps": 2,
                          "eval_steps": 3, "save_steps": 3, "per_device_train_batch_size": 4},
        "peft_config": {"r": 4, "lora_alpha": 8},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return run(folder / "config.yaml", resume="none")
