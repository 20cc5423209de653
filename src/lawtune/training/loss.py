"""The SFT loss computed only where it is needed, and the Trainer that uses it.

    loss, n = supervised_loss(model, batch)      # mean cross-entropy over supervised tokens, their count

The loss needs logits only at positions whose *next* token is supervised (an answer token or the
end-of-turn token). The Gemma 3 vocabulary has 262k entries, so projecting every position (prompt and
padding included) onto it dominates a step on a CPU: batch 4 × 400 tokens × 262k floats is 1.7 GB of
logits. transformers lets the causal LM slice hidden states before `lm_head` with a boolean
`logits_to_keep` mask of shape (batch, seq); we pass exactly the supervised positions, so the logits are
(n_supervised, vocab). The value is the same cross-entropy as the model's own `loss` on the full logits
(tests/training/test_loss.py checks this on one batch). The call still goes through the top-level
module's forward, so DDP's gradient hooks work unchanged under torchrun.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer

from lawtune.modeling.chat import IGNORE_INDEX


def accepts_logits_mask(model: Any) -> bool:
    """Whether the underlying causal LM's forward takes `logits_to_keep` (remote-code models may not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def supervised_loss(
    model: Any, batch: dict[str, torch.Tensor], num_items: torch.Tensor | int | None = None, sliced: bool = True
) -> tuple[torch.Tensor, int]:
    """Cross-entropy of next-token predictions at supervised positions (sum / num_items, else mean)."""
    labels = batch["labels"]
    targets_grid = labels[:, 1:]  # (B, T-1): the token predicted from each position
    supervised = targets_grid != IGNORE_INDEX
    count = int(supervised.sum())
    if sliced:
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = supervised  # (B, T): hidden states whose next token is supervised
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        logits_to_keep=keep, use_cache=False)
        logits = outputs.logits  # (n_supervised, vocab), rows in the same order as targets_grid[supervised]
    else:
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        logits = outputs.logits[:, :-1][supervised]
    targets = targets_grid[supervised]
    total = F.cross_entropy(logits.float(), targets, reduction="sum")
    denominator = num_items if num_items is not None else max(count, 1)
    return total / denominator, count


class TokenCounter:
    """Supervised tokens seen by this process (read by the progress bar)."""

    def __init__(self) -> None:
        self.tokens = 0


class SFTTrainer(Trainer):
    """HF Trainer whose loss projects only supervised positions onto the vocabulary."""

    def __init__(self, *args: Any, token_counter: TokenCounter | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.token_counter = token_counter or TokenCounter()
        self.sliced_logits = accepts_logits_mask(self.model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.model_accepts_loss_kwargs:
            num_items_in_batch = None  # the Trainer then averages over accumulation steps itself
        loss, count = supervised_loss(model, inputs, num_items_in_batch, sliced=self.sliced_logits)
        if model.training:
            self.token_counter.tokens += count
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch was summed over all processes and DDP averages gradients: undo the average,
            # exactly as Trainer.compute_loss does.
            loss = loss * self.accelerator.num_processes
        return (loss, {}) if return_outputs else loss
