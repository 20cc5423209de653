"""Continuous batching at the tensor level: joining, stepping and leaving a batch gives exactly the
tokens `model.generate` gives for each prompt alone (positions and masking are right).

    .venv/bin/pytest tests/serving/test_api_batch.py -q
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lawtune.serving.engines.batch import DecodeBatch, Sequence
from lawtune.modeling.decoding import (AnswerLogitsProcessor, DecodingPolicy, RepetitionStopCriteria, RepetitionWatch,
                                       TextStream)


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


@pytest.mark.parametrize("policy", [
    DecodingPolicy(),  # the defaults
    DecodingPolicy(repetition_penalty=1.3, frequency_penalty=0.2, presence_penalty=0.1, no_repeat_ngram_size=4),
    DecodingPolicy(repetition_penalty=1.0),  # the stop alone: the random model loops, so it fires
], ids=["defaults", "every-penalty", "stop-only"])
def test_decoding_policy_gives_the_same_greedy_tokens_in_generate_and_in_the_server_batch(model_and_tokenizer, policy):
    """model.generate with the policy's logits processor + stopping criterion (eval, infer) and the server's
    batch (pick_token + the engine's TextStream) pick the same tokens and stop at the same token."""
    model, tokenizer = model_and_tokenizer
    stops = [tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    prompts = [tokenizer(text)["input_ids"] for text in PROMPTS]
    alone = []
    for prompt, length in zip(prompts, LENGTHS):
        criteria = RepetitionStopCriteria(tokenizer, 1, len(prompt), stops)
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=length, do_sample=False, eos_token_id=stops, pad_token_id=0,
                             logits_processor=[AnswerLogitsProcessor(policy, len(prompt), stops)],
                             stopping_criteria=[criteria] if policy.repetition_stop else [])
        alone.append((out[0, len(prompt):].tolist(), criteria.streams[0].repeated))
    seqs = [Sequence(p, decoding=policy, stop_ids=frozenset(stops)) for p in prompts]
    for _ in _run_staggered(model, seqs):
        pass
    repeated = 0
    for seq, (tokens, hf_repeated) in zip(seqs, alone):
        assert seq.generated[:len(tokens)] == tokens
        # the engine's text side stops at the same token generate() stopped at
        stream = TextStream(tokenizer, watch=RepetitionWatch() if policy.repetition_stop else None)
        ended_at = None
        for count, token in enumerate(seq.generated, 1):
            if token in stops or stream.push(token) is None or stream.repeated:
                ended_at = count
                break
        assert stream.repeated == hf_repeated
        if ended_at is not None and ended_at <= len(tokens):  # generate() stopped there too, not earlier
            assert ended_at == len(tokens)
        repeated += stream.repeated
    if policy == DecodingPolicy(repetition_penalty=1.0):
        assert repeated >= 2  # the case under test did happen


def test_prefill_projects_only_the_last_position(model_and_tokenizer):
    """A prompt's prefill runs the output head on its last position only, and picks the same first token and
    logits as the full projection (the head over every prompt position was as costly as the decoder layers)."""
    model, tokenizer = model_and_tokenizer
    rows = []
    hook = model.get_output_embeddings().register_forward_hook(lambda module, args, out: rows.append(args[0].shape[1]))
    try:
        picked = {}
        for last_only in (True, False):
            batch = DecodeBatch(model, last_logits_only=last_only)
            seq = Sequence(tokenizer(PROMPTS[1])["input_ids"])
            picked[last_only] = batch.join(seq)
            batch.step()
            picked[last_only, "step"] = batch.last_logits[0].clone()
    finally:
        hook.remove()
    prompt_length = len(tokenizer(PROMPTS[1])["input_ids"])
    assert rows == [1, 1, prompt_length, 1]  # join, step (last only); join, step (full)
    assert picked[True] == picked[False]
    torch.testing.assert_close(picked[True, "step"], picked[False, "step"], rtol=0, atol=1e-5)
