"""Helpers of the export tests (imported by conftest.py and the tests, like evaluation_helpers.py)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def train_tiny(model: str, folder: Path, steps: int = 6, **peft) -> Path:
    import yaml

    from lawtune.training.train import run

    lines = [l.strip() for l in (FIXTURES / "corpus.txt").read_text(encoding="utf-8").splitlines() if l.strip()]
    rows = [{"conversations": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in zip(lines[0::2], lines[1::2])]
    for name, part in (("train", rows[:24]), ("dev", rows[56:60])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    config = {
        "model": {"name_or_path": model, "chat_template": "gemma"},
        "data_config": {"train_file": str(folder / "train.jsonl"), "val_file": str(folder / "dev.jsonl")},
        "max_input_length": 48, "max_output_length": 48,
        "training_args": {"output_dir": str(folder / "run"), "max_steps": steps, "learning_rate": 3e-2, "logging_steps": 2,
                          "eval_steps": 3, "save_steps": 3, "per_device_train_batch_size": 4},
        "peft_config": {"r": 4, "lora_alpha": 8, **peft},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return run(folder / "config.yaml", resume="none")
