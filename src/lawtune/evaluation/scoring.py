"""Likelihood-based scores: eval loss / perplexity on a conversations file, and multiple-choice accuracy.

    loss = eval_loss(loaded, examples, max_input_length=512, max_output_length=512)
    mcq = mcq_accuracy(loaded, read_mcq("data/benchmarks/jecqa_single.jsonl"))

Both only need the model's log-probabilities, so they parse no generated text. Only the positions that
are scored get vocabulary logits (`logits_to_keep`), and those a few at a time: with a 262k-token
vocabulary the logits, not the transformer, dominate memory (512 positions' float32 logits and their
log-softmax are 1 GiB; 32 positions' are 64 MiB). The model returns the hidden states of the scored
positions (its head swapped for an identity for that forward) and its own head projects them chunk by chunk,
the same computation as the model's logits, row by row.

MCQ: each option's text is scored as the answer to the question (the chat template's user turn holding
the question, then the option as the assistant's words). The pick is the option with the highest
log-likelihood per character (lm-evaluation-harness's `acc_norm`, with characters instead of bytes, so
long options are not punished for their length); the pick by the raw sum is reported too.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lawtune.errors import LawtuneError
from lawtune.evaluation.generation import make_progress
from lawtune.modeling.chat import IGNORE_INDEX

LOGIT_ROWS_PER_BATCH = 512  # scored positions per forward
TOKENS_PER_BATCH = 8192
LOGPROB_CHUNK_ROWS = 32  # positions projected onto the vocabulary at once: 32 × 262k float32 = 32 MiB
# Config attributes with which a model changes its logits after the head: those models project in the forward.
LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


# ---- shared: log-probabilities of continuations ------------------------------------------------------------
def _batches(prompt_lengths: list[int], continuation_lengths: list[int]) -> list[list[int]]:
    """Group indices (longest continuation first) so each batch's logits stay within the budget."""
    order = sorted(range(len(prompt_lengths)), key=lambda i: (-continuation_lengths[i], -prompt_lengths[i]))
    batches: list[list[int]] = []
    for index in order:
        candidate = (batches[-1] if batches else []) + [index]
        rows = len(candidate) * max(continuation_lengths[i] for i in candidate)
        tokens = len(candidate) * (max(prompt_lengths[i] for i in candidate) + max(continuation_lengths[i] for i in candidate))
        if batches and rows <= LOGIT_ROWS_PER_BATCH and tokens <= TOKENS_PER_BATCH:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def _continuation_logprobs(model: Any, prompts: list[list[int]], continuations: list[list[int]], pad_id: int) -> list[list[float]]:
    """log p(continuation token | prompt + earlier continuation tokens), for each row.

    Rows are laid out as [pads, prompt, continuation, pads]: prompts are left-padded so every
    continuation starts at the same column, and only those columns get vocabulary logits.
    """
    import torch

    prompt_width = max(len(p) for p in prompts)
    width = prompt_width + max(len(c) for c in continuations)
    rows, masks = [], []
    for prompt, continuation in zip(prompts, continuations):
        left, right = prompt_width - len(prompt), width - prompt_width - len(continuation)
        rows.append([pad_id] * left + prompt + continuation + [pad_id] * right)
        masks.append([0] * left + [1] * (len(prompt) + len(continuation)) + [0] * right)
    input_ids, attention = torch.tensor(rows), torch.tensor(masks)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens count from 0
    targets = input_ids[:, prompt_width:]  # column t-1 predicts the token in column t
    inputs = {"input_ids": input_ids, "attention_mask": attention, "position_ids": positions,
              "logits_to_keep": width - prompt_width + 1}  # logits at columns prompt_width-1 … width-1
    with torch.inference_mode():
        head = _plain_head(model)
        if head is None:
            picked = _picked_logprobs(model(**inputs).logits[:, :-1], targets, lambda rows: rows)
        else:  # the model hands back hidden states; the head projects a few rows at a time
            with _head_returns_hidden_states(model, head):
                hidden = model(**inputs).logits[:, :-1]
            picked = _picked_logprobs(hidden, targets, head)
    return [picked[row, :len(continuation)].tolist() for row, continuation in enumerate(continuations)]


def _picked_logprobs(states: Any, targets: Any, head: Any) -> Any:
    """log_softmax(head(states))[target] per (row, column), LOGPROB_CHUNK_ROWS positions at a time, so the
    float32 (positions × vocabulary) logits and their log-softmax exist for one chunk only."""
    import torch

    flat, flat_targets = states.reshape(-1, states.shape[-1]), targets.reshape(-1)
    picked = torch.empty(flat.shape[0], dtype=torch.float32)
    for start in range(0, flat.shape[0], LOGPROB_CHUNK_ROWS):
        part = slice(start, start + LOGPROB_CHUNK_ROWS)
        logprobs = torch.log_softmax(head(flat[part]).float(), dim=-1)
        picked[part] = logprobs.gather(-1, flat_targets[part, None]).squeeze(-1)
    return picked.view(targets.shape)


def _plain_head(model: Any) -> Any:
    """The model's output head when its logits are exactly `head(hidden states)` (a linear layer, no logit
    post-processing such as Gemma 2's final soft-capping), else None."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    config = getattr(base, "config", None)
    if type(head) is not torch.nn.Linear or any(getattr(config, name, None) not in (None, 1, 1.0) for name in LOGIT_POSTPROCESSING):
        return None
    if not any(child is head for child in base.children()):
        return None
    return head


@contextlib.contextmanager
def _head_returns_hidden_states(model: Any, head: Any) -> Iterator[None]:
    """Swap the output head for an identity for one forward (its logits are then the hidden states)."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = next(name for name, child in base.named_children() if child is head)
    setattr(base, name, torch.nn.Identity())
    try:
        yield
    finally:
        setattr(base, name, head)


def _score_all(loaded: Any, prompts: list[list[int]], continuations: list[list[int]], description: str,
               show_progress: bool) -> list[list[float]]:
    """Continuation log-probs for every (prompt, continuation) pair, batched, with a progress bar."""
    import contextlib

    results: list[list[float]] = [[] for _ in prompts]
    progress = make_progress()
    task = progress.add_task(description, total=len(prompts), rate="")
    with progress if show_progress else contextlib.nullcontext():
        for batch in _batches([len(p) for p in prompts], [len(c) for c in continuations]):
            scored = _continuation_logprobs(loaded.model, [prompts[i] for i in batch], [continuations[i] for i in batch],
                                            loaded.tokenizer.pad_token_id)
            for index, row in zip(batch, scored):
                results[index] = row
            progress.update(task, advance=len(batch))
    return results


# ---- eval loss ---------------------------------------------------------------------------------------------
def eval_loss(loaded: Any, examples: list[Any], max_input_length: int = 512, max_output_length: int = 512,
              show_progress: bool = True) -> dict[str, float]:
    """Mean cross-entropy per supervised token (answer + end-of-turn), and its exponential (perplexity).

    Also, per example, the teacher-forced probability of the end-of-turn token right after the reference
    answer (`stop_probs`): the direct measure of whether a model learned to stop where a good answer ends.
    """
    encoded = [loaded.chat.encode_example(e.messages, max_input_length, max_output_length) for e in examples]
    kept = [e for e in encoded if e is not None]
    dropped = len(encoded) - len(kept)
    if not kept:
        raise LawtuneError("no example has a supervised answer token left; raise max_output_length")
    starts = [next(i for i, label in enumerate(e.labels) if label != IGNORE_INDEX) for e in kept]
    scored = _score_all(loaded, [e.input_ids[:s] for e, s in zip(kept, starts)],
                        [e.input_ids[s:] for e, s in zip(kept, starts)], "eval loss", show_progress)
    total, tokens, stop_probs = 0.0, 0, []
    end = len(loaded.chat.end_of_turn_ids)
    for example, start, row in zip(kept, starts, scored):
        # prompt tokens of later turns lie inside the scored region and stay unscored
        supervised = [lp for lp, label in zip(row, example.labels[start:]) if label != IGNORE_INDEX]
        total -= sum(supervised)
        tokens += len(supervised)
        # the answer ends with the end-of-turn marker: its first token is the one that stops generation
        stop_probs.append(math.exp(supervised[-end]))
    stop_iter = iter(stop_probs)
    loss = total / tokens
    return {"eval_loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4),
            "loss_tokens": tokens, "loss_dropped": dropped,
            # teacher-forced p(end-of-turn | prompt + the whole reference answer), per example (None: dropped)
            "stop_probs": [next(stop_iter) if e is not None else None for e in encoded]}


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
    prompts, options, owners = [], [], []
    for number, item in enumerate(items):
        prompt = chat.encode_prompt([{"role": "user", "content": item.question}])
        for letter, text in item.options.items():
            prompts.append(prompt)
            options.append(tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id])
            owners.append((number, letter, len(text)))
    scored = _score_all(loaded, prompts, options, description, show_progress)
    scores: list[dict[str, tuple[float, int]]] = [{} for _ in items]
    for (number, letter, chars), row in zip(owners, scored):
        scores[number][letter] = (sum(row), max(chars, 1))
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
