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
    """A run folder on the tiny model with a LoRA adapter in `adapter/` and `best/`.

    Built with PEFT directly and laid out as `lawtune.modeling.runs` describes; the training engineer
    replaces this body with a short real `lawtune.training.train.run` once training lands.
    """
    import json
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lawtune.fsutil import sha256_tree
    from lawtune.modeling.chat import load_template

    run = tmp_path_factory.mktemp("tiny-run")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(run / "adapter")
    shutil.copytree(run / "adapter", run / "best")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run / "tokenizer")
    (run / "chat_template.jinja").write_text(load_template("gemma"), encoding="utf-8")
    (run / "run.json").write_text(json.dumps({"base_model": {"path": str(tiny_model_dir), "sha256": sha256_tree(tiny_model_dir)}}))
    return run
