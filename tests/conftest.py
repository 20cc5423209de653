"""Shared fixtures: the tiny model (built once per session) and sample conversations; the test tiers.

Tiers (markers registered in pyproject.toml), given to every test by `pytest_collection_modifyitems` below from
what the test needs, so a new test is placed without anyone remembering to mark it:

    pytest -m unit                            # the fast tier (`make test-fast`): no model, no server, no browser
    pytest -m "not browser and not postgres"  # everything that needs no system service (chromium, PostgreSQL)
    pytest                                    # everything (`make test`)

- integration: a tiny model or what is made from it (a trained run, a live server, an export, the wheel) or a
  redis-server (the fixtures in INTEGRATION_FIXTURES, and every fixture built on them), or a module that says
  so itself (`pytestmark = pytest.mark.integration`);
- browser: a headless Chromium (the browser modules mark themselves);
- postgres: a PostgreSQL server (the `postgres_server` fixture, or the postgres case of the KB fixtures);
- unit: none of these. A test may need several (a browser test also serves a tiny run).
"""

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


# ---- test tiers ----------------------------------------------------------------------------------------------
# Session fixtures that build or load a model or start a server (seconds each): a test using one is integration.
INTEGRATION_FIXTURES = {"tiny_model_dir", "spm_model_dir", "installed", "redis_url"}
NEEDS = ("integration", "browser", "postgres")


def pytest_collection_modifyitems(items):
    for item in items:
        needs = {mark.name for mark in item.iter_markers() if mark.name in NEEDS}
        if INTEGRATION_FIXTURES & set(item.fixturenames):
            needs.add("integration")
        backend = item.callspec.params.get("built_kb") if hasattr(item, "callspec") else None  # tests/kb/conftest.py
        if "postgres_server" in item.fixturenames or backend == "postgres":
            needs.add("postgres")
        for name in sorted(needs) or ["unit"]:
            item.add_marker(name)
