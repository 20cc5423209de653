"""Build a tiny random model of the default model's family (Gemma 3) and a tiny tokenizer, offline.

The tokenizer is a byte-level BPE trained with `tokenizers` on `fixtures/corpus.txt` (real legal Q&A
text), with Gemma's special tokens at Gemma's ids; the model is a 2-layer, width-16 Gemma3ForCausalLM.
Both are saved with `save_pretrained` and loaded by path, exactly like a real model.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
# Gemma's layout: <pad> 0, <eos> 1, <bos> 2, <unk> 3, ... <start_of_turn> 105, <end_of_turn> 106 in the
# real model; the tiny one keeps the names (the ids differ, the code never hard-codes them).
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]


def build_tiny_tokenizer(out_dir: Path, vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train([str(FIXTURES / "corpus.txt")], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny Gemma 3 model + tokenizer to `out_dir` and return it."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = build_tiny_tokenizer(out_dir)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024,
        sliding_window=64, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    model.save_pretrained(out_dir)
    return out_dir
