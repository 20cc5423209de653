"""The SFT loss computed only where it is needed, and the Trainer that uses it.

    loss, n = supervised_loss(model, batch)      # mean cross-entropy over supervised tokens, their count

The loss needs logits only at positions whose *next* token is supervised (an answer token or the
end-of-turn token). The Gemma 3 vocabulary has 262k entries, so projecting every position (prompt and
padding included) onto it dominates a step on a CPU: batch 4 × 400 tokens × 262k floats is 1.7 GB of
logits. transformers lets the causal LM slice hidden states before `lm_head` with a boolean
`logits_to_keep` mask of shape (batch, seq); we pass exactly the supervised positions.

Three ways to the same loss value, picked per model by `SFTTrainer` (the best one the model allows):

  "fused":  the output head is swapped for an identity during the forward, so the model returns the hidden
            states of the supervised positions, and `vocab_loss.linear_cross_entropy` projects them itself:
            its backward skips the vocabulary columns of negligible probability (`grad_filter`). Needs a
            frozen, bias-free linear head with no logit post-processing (Gemma 3, Llama, Qwen, ...); a few
            trained rows (PEFT trainable tokens, `training/token_rows.py`) are allowed.
  "sliced": logits (n_supervised, vocab) from the model, then `F.cross_entropy` (exact gradient).
  "full":   every position's logits, for models whose forward has no `logits_to_keep` (remote code).

tests/training/test_loss.py checks all three against the model's own `loss`. The call always goes through
the top-level module's forward, so DDP's gradient hooks work unchanged under torchrun.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from lawtune.modeling.chat import IGNORE_INDEX
from lawtune.training.token_rows import trained_head_rows
from lawtune.training.vocab_loss import linear_cross_entropy

HeadPath = Literal["fused", "sliced", "full"]
# Config attributes with which a model changes its logits after the head: such models keep the plain path.
LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def _base(model: Any) -> Any:
    """The causal LM inside DDP / accelerate (`.module`) and PEFT wrappers."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def accepts_logits_mask(model: Any) -> bool:
    """Whether the underlying causal LM's forward takes `logits_to_keep` (remote-code models may not)."""
    return "logits_to_keep" in inspect.signature(_base(model).forward).parameters


def plain_output_head(model: Any) -> tuple[str, nn.Linear, tuple | None] | None:
    """(attribute name, head, trained rows) when logits are exactly `hidden @ head.weight.T` with a frozen
    head, except for a few trained rows (PEFT trainable tokens: `(index, values)`, else None)."""
    base = _base(model)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    trained = trained_head_rows(head)
    rows = None
    if trained is not None:
        linear, *rows = trained
        rows = tuple(rows)
    elif type(head) is not nn.Linear or head.bias is not None or head.weight.requires_grad:
        return None  # e.g. a LoRA-wrapped or modules_to_save head: it trains, so the plain path
    config = getattr(base, "config", None)
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in LOGIT_POSTPROCESSING):
        return None
    name = next((name for name, child in base.named_children() if child is head), None)
    return (name, head, rows) if name else None


def best_head_path(model: Any) -> HeadPath:
    if not accepts_logits_mask(model):
        return "full"
    return "fused" if plain_output_head(model) else "sliced"


@contextmanager
def _head_returns_hidden_states(model: Any) -> Iterator[tuple[torch.Tensor, tuple | None]]:
    """Swap the output head for an identity; yields (frozen weight, trained rows or None)."""
    name, head, rows = plain_output_head(model)
    base = _base(model)
    weight = head.weight if rows is None else head.token_adapter.base_layer.weight
    setattr(base, name, nn.Identity())
    try:
        yield weight, rows
    finally:
        setattr(base, name, head)


def supervised_loss(
    model: Any, batch: dict[str, torch.Tensor], num_items: torch.Tensor | int | None = None,
    head_path: HeadPath = "sliced", grad_filter: float = 0.0, bf16: bool | None = None,
) -> tuple[torch.Tensor, int]:
    """Cross-entropy of next-token predictions at supervised positions (sum / num_items, else mean).

    `bf16`: the fused head's projections in bf16 (None: when bf16 autocast is on around this call)."""
    labels = batch["labels"]
    targets_grid = labels[:, 1:]  # (B, T-1): the token predicted from each position
    supervised = targets_grid != IGNORE_INDEX
    count = int(supervised.sum())
    targets = targets_grid[supervised]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
    if head_path == "full":
        logits = model(**inputs).logits[:, :-1][supervised]
        total = F.cross_entropy(logits.float(), targets, reduction="sum")
    else:
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = supervised  # (B, T): hidden states whose next token is supervised, in targets' order
        if head_path == "sliced":
            logits = model(**inputs, logits_to_keep=keep).logits  # (n_supervised, vocab)
            total = F.cross_entropy(logits.float(), targets, reduction="sum")
        else:
            with _head_returns_hidden_states(model) as (weight, rows):
                hidden = model(**inputs, logits_to_keep=keep).logits  # (n_supervised, hidden size)
            total = linear_cross_entropy(hidden, weight, targets, filter_eps=grad_filter, rows=rows, bf16=bf16)
    denominator = num_items if num_items is not None else max(count, 1)
    return total / denominator, count


class TokenCounter:
    """Supervised tokens seen by this process (read by the progress bar)."""

    def __init__(self) -> None:
        self.tokens = 0


class SFTTrainer(Trainer):
    """HF Trainer whose loss projects only supervised positions onto the vocabulary."""

    def __init__(self, *args: Any, token_counter: TokenCounter | None = None, grad_filter: float = 0.0,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.token_counter = token_counter or TokenCounter()
        self.head_path = best_head_path(self.model)
        self.grad_filter = grad_filter

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.model_accepts_loss_kwargs:
            num_items_in_batch = None  # the Trainer then averages over accumulation steps itself
        # bf16 training: the fused head in bf16 too (accelerate's autocast wraps only the model's forward)
        loss, count = supervised_loss(model, inputs, num_items_in_batch, self.head_path, self.grad_filter,
                                      bf16=bool(self.args.bf16))
        if model.training:
            self.token_counter.tokens += count
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch was summed over all processes and DDP averages gradients: undo the average,
            # exactly as Trainer.compute_loss does.
            loss = loss * self.accelerator.num_processes
        return (loss, {}) if return_outputs else loss
