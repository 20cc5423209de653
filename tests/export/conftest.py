"""Fixtures of the export tests: tiny runs like lawtune's own configs make them, and a tiny SentencePiece model.

- `token_run_dir`: the tiny model trained with `trainable_token_indices: ["<end_of_turn>"]`, as configs/demo.yaml
  trains the default model (a LoRA adapter plus a trained token row).
- `spm_model_dir`: a tiny Gemma 3 whose tokenizer is a SentencePiece model (`tokenizer.model`, trained here on the
  fixture corpus) — the kind of tokenizer Gemma ships and llama.cpp's converter reads. The session's other tiny
  model has a byte-level BPE of its own, which llama.cpp's converter rightly refuses (unknown pre-tokenizer).
- `gguf_base`: that model converted to GGUF by llama.cpp's converter and imported with `lawtune model import
  FILE.gguf`, exactly as the default model arrives (a GGUF → a transformers folder with a rebuilt tokenizer);
  `gguf_run_dir` is a short training run on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def token_run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return train_tiny(str(tiny_model_dir), tmp_path_factory.mktemp("token-run"), trainable_token_indices=["<end_of_turn>"])


@pytest.fixture(scope="session")
def spm_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, width-16 Gemma 3 with a 1,400-piece SentencePiece BPE (byte fallback), Gemma's special ids."""
    import sentencepiece as spm
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    out = tmp_path_factory.mktemp("spm-model")
    spm.SentencePieceTrainer.train(
        input=str(FIXTURES / "corpus.txt"), model_prefix=str(out / "tokenizer"), model_type="bpe", vocab_size=1400,
        character_coverage=0.98, byte_fallback=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
        eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>", user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
        add_dummy_prefix=False, remove_extra_whitespaces=False, normalization_rule_name="identity", minloglevel=2)
    (out / "tokenizer.vocab").unlink()
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
        "unk_token": "<unk>", "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]}), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.save_pretrained(out)  # adds tokenizer.json next to tokenizer.model
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=1024, sliding_window=64,
        pad_token_id=0, bos_token_id=2, eos_token_id=1)
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def gguf_file(spm_model_dir, tmp_path_factory) -> Path:
    """The SentencePiece tiny model as a float32 GGUF, written by llama.cpp's converter."""
    from lawtune.export.gguf import convert_model

    return convert_model(spm_model_dir, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", "f32")


@pytest.fixture(scope="session")
def gguf_home(gguf_file, tmp_path_factory) -> Path:
    """A LAWTUNE_HOME holding the GGUF imported by `lawtune model import` (kept for the session)."""
    import os

    home = tmp_path_factory.mktemp("gguf-home")
    old = os.environ.get("LAWTUNE_HOME")
    os.environ["LAWTUNE_HOME"] = str(home)
    try:
        from lawtune.modeling.importer import import_model

        import_model(str(gguf_file), name="tiny-gguf")
    finally:
        os.environ["LAWTUNE_HOME"] = old or ""
    return home


@pytest.fixture()
def gguf_run_dir(gguf_home, tmp_path_factory, monkeypatch) -> Path:
    """A run on the GGUF-imported base (like a run on the default model), with a trained end-of-turn row."""
    monkeypatch.setenv("LAWTUNE_HOME", str(gguf_home))
    return _gguf_run(tmp_path_factory)


_RUNS: dict[str, Path] = {}


def _gguf_run(tmp_path_factory) -> Path:
    if "run" not in _RUNS:
        _RUNS["run"] = train_tiny("tiny-gguf", tmp_path_factory.mktemp("gguf-run"), steps=6,
                                  trainable_token_indices=["<end_of_turn>"])
    return _RUNS["run"]
