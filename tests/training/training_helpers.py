"""Helpers for the training tests: conversations from the fixture corpus and a tiny-model config writer."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

CORPUS = Path(__file__).parent.parent / "fixtures" / "corpus.txt"


def corpus_conversations() -> list[dict]:
    """The fixture corpus alternates question and answer lines: 60 one-turn conversations."""
    lines = [line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"conversations": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in zip(lines[0::2], lines[1::2])]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def tiny_config(folder: Path, model_dir: Path, files: dict[str, Path], **sections) -> Path:
    """A small training config for the tiny model; `sections` update the defaults section by section."""
    config = {
        "model": {"name_or_path": str(model_dir), "chat_template": "gemma"},
        "data_config": {"train_file": str(files["train"]), "val_file": str(files["dev"])},
        "max_input_length": 48,
        "max_output_length": 48,
        "training_args": {"output_dir": str(folder / "run"), "max_steps": 12, "learning_rate": 3e-2,
                          "per_device_train_batch_size": 4, "logging_steps": 2, "eval_steps": 4, "save_steps": 4,
                          "save_total_limit": 2, "warmup_steps": 0, "lr_scheduler_type": "constant"},
        "peft_config": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
        "eval": {"dev_rows": 12},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(name, {}).update(values)
        else:
            config[name] = values
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path
