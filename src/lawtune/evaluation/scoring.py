"""Likelihood-based scores: eval loss / perplexity on a conversations file, and multiple-choice accuracy.

    loss = eval_loss(loaded, examples, max_input_length=512, max_output_length=512)
    mcq = mcq_accuracy(loaded, read_mcq("data/benchmarks/jecqa_single.jsonl"))

Both only need the model's log-probabilities, so they parse no generated text. Only the positions that
are scored get vocabulary logits (`logits_to_keep`): with a 262k-token vocabulary the logits, not the
transformer, dominate memory.

MCQ: each option's text is scored as the answer to the question (the chat template's user turn holding
the question, then the option as the assistant's words). The pick is the option with the highest
log-likelihood per character (lm-evaluation-harness's `acc_norm`, with characters instead of bytes, so
long options are not punished for their length); the pick by the raw sum is reported too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lawtune.errors import LawtuneError
from lawtune.evaluation.generation import make_progress
from lawtune.modeling.chat import IGNORE_INDEX

LOGIT_ROWS_PER_BATCH = 512  # ~0.5 GB of fp32 logits with a 262k vocabulary


# ---- shared: log-probabilities of chosen positions ------------------------------------------------------
def _batches(lengths: list[int], cost) -> list[list[int]]:
    """Group indices (sorted by length, longest first) so each batch stays within the logits budget."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches and cost(batches[-1] + [index]) <= LOGIT_ROWS_PER_BATCH:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def _token_logprobs(model: Any, sequences: list[list[int]], scored_from: list[int], pad_id: int) -> list[list[float]]:
    """For each sequence, log p(token_t | tokens_<t) for t in [scored_from, len) (right padding)."""
    import torch

    width = max(len(s) for s in sequences)
    first = min(scored_from)  # every row's scored tokens lie in [first, width)
    input_ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences])
    attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    with torch.inference_mode():
        # logits at positions first-1 … width-1; position t-1 predicts token t
        logits = model(input_ids=input_ids, attention_mask=attention, logits_to_keep=width - first + 1).logits
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = input_ids[:, first:]
        picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (rows, width - first)
    return [picked[row, start - first:len(seq) - first].tolist() for row, (seq, start) in enumerate(zip(sequences, scored_from))]


# ---- eval loss ---------------------------------------------------------------------------------------------
def eval_loss(loaded: Any, examples: list[Any], max_input_length: int = 512, max_output_length: int = 512,
              show_progress: bool = True) -> dict[str, float]:
    """Mean cross-entropy per supervised token (answer + end-of-turn), and its exponential (perplexity)."""
    encoded = [loaded.chat.encode_example(e.conversation, max_input_length, max_output_length) for e in examples]
    kept = [e for e in encoded if e is not None]
    dropped = len(encoded) - len(kept)
    if not kept:
        raise LawtuneError("no example has a supervised answer token left; raise max_output_length")
    starts = [next(i for i, label in enumerate(e.labels) if label != IGNORE_INDEX) for e in kept]
    lengths = [len(e.input_ids) for e in kept]
    batches = _batches(lengths, lambda b: len(b) * (max(lengths[i] for i in b) - min(starts[i] for i in b) + 1))
    total, tokens = 0.0, 0
    progress = make_progress()
    task = progress.add_task("eval loss", total=len(kept), rate="")
    with progress if show_progress else _quiet():
        for batch in batches:
            rows = _token_logprobs(loaded.model, [kept[i].input_ids for i in batch], [starts[i] for i in batch],
                                   loaded.tokenizer.pad_token_id)
            for index, row in zip(batch, rows):
                labels = kept[index].labels[starts[index]:]
                # prompt tokens inside the answer region (later turns) stay unscored
                total -= sum(lp for lp, label in zip(row, labels) if label != IGNORE_INDEX)
                tokens += sum(1 for label in labels if label != IGNORE_INDEX)
            progress.update(task, advance=len(batch))
    loss = total / tokens
    return {"eval_loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4),
            "loss_tokens": tokens, "loss_dropped": dropped}


def _quiet():
    import contextlib

    return contextlib.nullcontext()


# ---- multiple choice ---------------------------------------------------------------------------------------
@dataclass
class McqItem:
    id: str
    question: str
    options: dict[str, str]
    answer: str


def read_mcq(path: str | Path, limit: int | None = None) -> list[McqItem]:
    """A bundled MCQ file: JSONL of {"id", "question", "options": {"A": ...}, "answer": "B"}."""
    path = Path(path)
    if not path.is_file():
        raise LawtuneError(f"MCQ file {path} not found; the bundled ones are in data/benchmarks/")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            item = McqItem(str(record["id"]), record["question"], dict(record["options"]), record["answer"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise LawtuneError(f"{path}:{number} is not an MCQ item {{id, question, options, answer}} ({error})") from error
        if item.answer not in item.options or len(item.options) < 2:
            raise LawtuneError(f"{path}:{number}: answer {item.answer!r} is not one of the options {list(item.options)}")
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    return items


def option_scores(loaded: Any, items: list[McqItem], show_progress: bool = True,
                  description: str = "MCQ") -> list[dict[str, tuple[float, int]]]:
    """Per item, per option letter: (sum of log-probs of the option's tokens, its character count)."""
    chat, tokenizer = loaded.chat, loaded.tokenizer
    sequences, starts, owners = [], [], []
    for number, item in enumerate(items):
        prompt = chat.encode_prompt([{"role": "user", "content": item.question}])
        for letter, text in item.options.items():
            option = tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
            sequences.append(prompt + option)
            starts.append(len(prompt))
            owners.append((number, letter, len(text)))
    lengths = [len(s) for s in sequences]
    batches = _batches(lengths, lambda b: len(b) * (max(lengths[i] for i in b) - min(starts[i] for i in b) + 1))
    scores: list[dict[str, tuple[float, int]]] = [{} for _ in items]
    progress = make_progress()
    task = progress.add_task(description, total=len(sequences), rate="options")
    with progress if show_progress else _quiet():
        for batch in batches:
            rows = _token_logprobs(loaded.model, [sequences[i] for i in batch], [starts[i] for i in batch],
                                   tokenizer.pad_token_id)
            for index, row in zip(batch, rows):
                number, letter, chars = owners[index]
                scores[number][letter] = (sum(row), max(chars, 1))
            progress.update(task, advance=len(batch))
    return scores


def mcq_accuracy(loaded: Any, items: list[McqItem], show_progress: bool = True, description: str = "MCQ") -> dict[str, Any]:
    """Accuracy (%) of the per-character pick and of the raw-sum pick, plus each item's pick."""
    if not items:
        raise LawtuneError("the MCQ set is empty")
    scores = option_scores(loaded, items, show_progress, description)
    picks_norm = [max(s, key=lambda letter: s[letter][0] / s[letter][1]) for s in scores]
    picks_sum = [max(s, key=lambda letter: s[letter][0]) for s in scores]
    count = len(items)
    return {
        "accuracy": round(100 * sum(p == i.answer for p, i in zip(picks_norm, items)) / count, 2),
        "accuracy_sum": round(100 * sum(p == i.answer for p, i in zip(picks_sum, items)) / count, 2),
        "count": count,
        "picks": picks_norm,
    }
