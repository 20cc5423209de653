"""Continuous batching at the tensor level: joining, stepping and leaving a batch gives exactly the
tokens `model.generate` gives for each prompt alone (positions and masking are right).

    .venv/bin/pytest tests/serving/test_api_batch.py -q
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lawtune.serving.batch import DecodeBatch, Sequence
from lawtune.modeling.decoding import TextStream


PROMPTS = ["离婚需要什么材料", "劳动合同" * 9, "交通事故赔偿怎么算" * 4, "借", "房屋租赁合同纠纷" * 3]
LENGTHS = [40, 90, 25, 60, 70]  # the 9×劳动合同 prompt + 90 tokens runs past the sliding window (64)
JOINS = {0: [0, 1], 5: [2], 17: [3], 30: [4]}  # step → sequences joining before it


def _run_staggered(model, seqs):
    """Join at different steps, leave at different lengths; yields after every batched step."""
    batch = DecodeBatch(model)
    for step in range(200):
        for index in JOINS.get(step, []):
            batch.join(seqs[index])
        if not batch.sequences:
            return
        batch.step()
        yield batch
        batch.remove([s for s, n in zip(seqs, LENGTHS) if s in batch.sequences and len(s.generated) >= n])


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_batched_logits_equal_each_sequence_run_alone(model_and_tokenizer):
    """Every row's logits at every step equal a plain forward pass over that sequence alone — the direct
    check that position ids, padding and the attention mask are right (seeded sampling makes the tokens
    vary; the random model's greedy answers are one token repeated)."""
    model, tokenizer = model_and_tokenizer
    seqs = [Sequence(tokenizer(text)["input_ids"], temperature=1.0, seed=i) for i, text in enumerate(PROMPTS)]
    worst = 0.0
    with torch.inference_mode():
        for batch in _run_staggered(model, seqs):
            for row, seq in enumerate(batch.sequences):
                ids = seq.prompt_ids + seq.generated[:-1]  # the input that produced the newest token
                alone = model(input_ids=torch.tensor([ids])).logits[0, -1]
                worst = max(worst, float((batch.last_logits[row] - alone).abs().max()))
    assert all(len(set(seq.generated)) > 5 for seq in seqs)
    assert worst < 1e-4, f"batched logits differ from alone by {worst}"


def test_greedy_batch_equals_generate_alone(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = [tokenizer(text)["input_ids"] for text in PROMPTS]
    alone = [model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                            max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)[0, len(p):].tolist()
             for p, n in zip(prompts, LENGTHS)]
    seqs = [Sequence(p) for p in prompts]
    for _ in _run_staggered(model, seqs):
        pass
    assert [seq.generated[:n] for seq, n in zip(seqs, LENGTHS)] == alone


def test_text_stream_holds_back_partial_characters_and_stop_prefixes(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "合同无效。问：下一个问题"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer, stop=["问："])
    sent = "".join(stream.push(i) for i in ids if not stream.stopped) + stream.flush()
    assert stream.stopped and sent == "合同无效。"
    plain = TextStream(tokenizer)
    pieces = [plain.push(i) for i in ids]
    assert "".join(pieces) + plain.flush() == text
    assert all("\ufffd" not in piece for piece in pieces)
