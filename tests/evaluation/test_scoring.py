"""Eval loss and MCQ log-likelihood scoring on the tiny model, checked against plain full forwards."""

from __future__ import annotations

import json

import pytest
import torch

from lawtune.data.conversations import read_examples
from lawtune.evaluation.scoring import McqItem, eval_loss, mcq_accuracy, option_scores, read_mcq
from lawtune.modeling.loading import load_model

QUESTION = "甲公司拖欠乙工资三个月，乙可以怎么办？"
OPTIONS = {"A": "申请劳动仲裁", "B": "直接放弃", "C": "向法院起诉要求支付工资和经济补偿金", "D": "无"}


@pytest.fixture(scope="module")
def loaded(tiny_run_dir):
    return load_model(tiny_run_dir, merge=True)


def _reference_logprob(loaded, prompt_messages, continuation: str) -> float:
    """Sum of log p(continuation tokens) from one unbatched, unpadded forward with all logits."""
    prompt = loaded.chat.encode_prompt(prompt_messages)
    option = loaded.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + option])
    with torch.no_grad():
        logprobs = torch.log_softmax(loaded.model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    return sum(logprobs[len(prompt) - 1 + i, token].item() for i, token in enumerate(option))


def test_option_scores_match_an_unbatched_forward(loaded):
    items = [McqItem("q1", QUESTION, OPTIONS, "A"), McqItem("q2", "离婚后孩子抚养权归谁？", {"A": "父亲", "B": "母亲或者父亲，看对孩子是否有利"}, "B")]
    scores = option_scores(loaded, items, show_progress=False)
    for item, item_scores in zip(items, scores):
        for letter, text in item.options.items():
            expected = _reference_logprob(loaded, [{"role": "user", "content": item.question}], text)
            assert item_scores[letter][0] == pytest.approx(expected, abs=1e-3)
            assert item_scores[letter][1] == len(text)


def test_mcq_picks_the_option_with_the_highest_likelihood(loaded):
    # per-character log-likelihood of each option, computed independently; the answer key is set to the
    # most likely option (accuracy must be 100) and then to the least likely one (accuracy must be 0)
    per_char = {letter: _reference_logprob(loaded, [{"role": "user", "content": QUESTION}], text) / len(text)
                for letter, text in OPTIONS.items()}
    best, worst = max(per_char, key=per_char.get), min(per_char, key=per_char.get)
    assert mcq_accuracy(loaded, [McqItem("q", QUESTION, OPTIONS, best)], show_progress=False)["accuracy"] == 100.0
    result = mcq_accuracy(loaded, [McqItem("q", QUESTION, OPTIONS, worst)], show_progress=False)
    assert result["accuracy"] == 0.0 and result["picks"] == [best]


def test_eval_loss_matches_transformers_loss_on_one_example(loaded, qa_file):
    example = next(read_examples(qa_file, limit=1))
    encoded = loaded.chat.encode_example(example.messages, 512, 512)
    with torch.no_grad():
        expected = loaded.model(input_ids=torch.tensor([encoded.input_ids]), labels=torch.tensor([encoded.labels])).loss.item()
    result = eval_loss(loaded, [example], show_progress=False)
    assert result["eval_loss"] == pytest.approx(expected, abs=1e-4)
    assert result["perplexity"] == pytest.approx(2.718281828 ** expected, rel=1e-3)
    assert result["loss_tokens"] == encoded.supervised_tokens


def test_eval_loss_batched_equals_one_by_one(loaded, qa_file):
    examples = list(read_examples(qa_file))
    together = eval_loss(loaded, examples, show_progress=False)
    singles = [eval_loss(loaded, [e], show_progress=False) for e in examples]
    mean = sum(s["eval_loss"] * s["loss_tokens"] for s in singles) / sum(s["loss_tokens"] for s in singles)
    assert together["eval_loss"] == pytest.approx(mean, abs=1e-4)


def test_bundled_mcq_files_parse(tmp_path):
    from lawtune.evaluation.evaluate import BENCHMARKS_DIR

    for name in ("jecqa_single", "lawbench_1-2"):
        items = read_mcq(BENCHMARKS_DIR / f"{name}.jsonl")
        assert len(items) == 200
        assert all(set(item.options) == set("ABCD") and item.answer in "ABCD" for item in items)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": 1, "question": "q", "options": {"A": "x", "B": "y"}, "answer": "E"}) + "\n")
    from lawtune.errors import LawtuneError

    with pytest.raises(LawtuneError, match="bad.jsonl:1"):
        read_mcq(bad)


def test_stop_probability_is_the_end_token_probability_after_the_whole_reference(loaded, qa_file):
    example = next(read_examples(qa_file, limit=1))
    encoded = loaded.chat.encode_example(example.messages, 512, 512)
    stop = loaded.chat.end_of_turn_ids[0]
    at = len(encoded.input_ids) - len(loaded.chat.end_of_turn_ids)  # the position of the end-of-turn token
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([encoded.input_ids[:at]])).logits[0, -1]
    expected = torch.softmax(logits.float(), -1)[stop].item()
    (probability,) = eval_loss(loaded, [example], show_progress=False)["stop_probs"]
    assert probability == pytest.approx(expected, rel=1e-3)


def test_chunked_head_projection_equals_the_models_own_logits(loaded, monkeypatch):
    """The scored positions' log-probs, projected a few rows at a time from hidden states, equal those of
    the model's own full logits (the path a model with logit post-processing takes)."""
    from lawtune.evaluation import scoring

    assert scoring._plain_head(loaded.model) is not None  # the tiny Gemma 3 takes the chunked path
    tokenizer = loaded.tokenizer
    prompts = [loaded.chat.encode_prompt([{"role": "user", "content": q}]) for q in (QUESTION, "离婚后孩子抚养权归谁？")]
    options = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in OPTIONS.values()]
    pairs = [(p, o) for p in prompts for o in options]
    args = (loaded.model, [p for p, _ in pairs], [o for _, o in pairs], tokenizer.pad_token_id)
    monkeypatch.setattr(scoring, "LOGPROB_CHUNK_ROWS", 3)  # chunks that split rows and batch rows
    chunked = scoring._continuation_logprobs(*args)
    monkeypatch.setattr(scoring, "_plain_head", lambda model: None)
    monkeypatch.setattr(scoring, "LOGPROB_CHUNK_ROWS", 10_000)  # one chunk: the whole logits at once
    whole = scoring._continuation_logprobs(*args)
    assert [len(row) for row in chunked] == [len(o) for _, o in pairs]
    for a, b in zip(chunked, whole):
        assert a == pytest.approx(b, abs=1e-6)
    assert type(loaded.model.get_output_embeddings()) is torch.nn.Linear  # the head is back after the forward
