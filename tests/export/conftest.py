"""Fixtures of the export tests: tiny runs like lawtune's own configs make them, and a tiny SentencePiece model.

- `token_run_dir`: the tiny model trained with `trainable_token_indices: ["<end_of_turn>"]`, as configs/demo.yaml
  trains the default model (a LoRA adapter plus a trained token row).
- `spm_model_dir`: a tiny Gemma 3 whose tokenizer is a SentencePiece model (`tokenizer.model`, trained here on the
  fixture corpus) — the kind of tokenizer Gemma ships and llama.cpp's converter reads. The session's other tiny
  model has a byte-level BPE of its own, which llama.cpp's converter rightly refuses (unknown pre-tokenizer).
- `gguf_file`: that model converted to GGUF by llama.cpp's converter; `gguf_run_dir`: a short run on it after
  `lawtune model import FILE.gguf`, exactly as the default model arrives (a GGUF → a transformers folder whose
  tokenizer is rebuilt from the GGUF, no tokenizer.model).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from export_helpers import FIXTURES, train_tiny


@pytest.fixture(scope="session")
def token_run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return train_tiny(str(tiny_model_dir), tmp_path_factory.mktemp("token-run"), trainable_token_indices=["<end_of_turn>"])


@pytest.fixture(scope="session")
def spm_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, width-16 Gemma 3 (head dim 256) with a 1,400-piece SentencePiece BPE (byte fallback), Gemma's
    special ids, `<start_of_turn>` / `<end_of_turn>` as control pieces like Gemma's."""
    import sentencepiece as spm
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    out = tmp_path_factory.mktemp("spm-model")
    spm.SentencePieceTrainer.train(
        input=str(FIXTURES / "corpus.txt"), model_prefix=str(out / "tokenizer"), model_type="bpe", vocab_size=1400,
        character_coverage=0.98, byte_fallback=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
        eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>", control_symbols=["<start_of_turn>", "<end_of_turn>"],
        add_dummy_prefix=False, remove_extra_whitespaces=False, normalization_rule_name="identity", minloglevel=2)
    (out / "tokenizer.vocab").unlink()
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
        "unk_token": "<unk>", "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]}), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.save_pretrained(out)  # adds tokenizer.json next to tokenizer.model
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=1024, sliding_window=64,
        # head_dim = query_pre_attn_scalar = 256, as in the real Gemma 3 270M: GGUF has no key for the scalar, so
        # llama.cpp scales attention by the head dim, and transformers' GGUF import sets the scalar to 256
        head_dim=256, query_pre_attn_scalar=256, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def gguf_file(spm_model_dir, tmp_path_factory) -> Path:
    """The SentencePiece tiny model as a float32 GGUF, written by llama.cpp's converter."""
    from lawtune.export.gguf import convert_model

    return convert_model(spm_model_dir, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", "f32")


@pytest.fixture(scope="session")
def gguf_run_dir(gguf_file, tmp_path_factory) -> Path:
    """`lawtune model import tiny-f32.gguf` into a model cache, then a short run on it with a trained end-of-turn
    row (like a run on the default model). The run records the base's absolute path, so later tests (each with
    a model cache of its own) still find it."""
    from lawtune.modeling.importer import import_model

    home = tmp_path_factory.mktemp("gguf-home")
    old = os.environ.get("LAWTUNE_HOME")
    os.environ["LAWTUNE_HOME"] = str(home)
    try:
        import_model(str(gguf_file), name="tiny-gguf")
        return train_tiny("tiny-gguf", tmp_path_factory.mktemp("gguf-run"), trainable_token_indices=["<end_of_turn>"])
    finally:
        if old is None:
            os.environ.pop("LAWTUNE_HOME", None)
        else:
            os.environ["LAWTUNE_HOME"] = old
