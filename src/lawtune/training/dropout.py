"""LoRA dropout that draws one random number per *dropped* element instead of one per element.

    swapped = use_sparse_dropout(peft_model)     # replaces every LoRA dropout module; returns how many

PEFT applies `nn.Dropout(lora_dropout)` to the input of every adapted layer: on Gemma 3 that is 7 layers ×
18 blocks, each drawing a Bernoulli number for every element of a (tokens × 640) activation. On a CPU those
draws (`aten::bernoulli_`) took an eighth of a training step. With p = 0.05 only one element in twenty is
dropped, so `SparseDropout` draws the *gaps* between dropped elements instead: i.i.d. Geometric(p) gaps
give exactly i.i.d. Bernoulli(p) positions, so the mask has the same distribution as `nn.Dropout`'s and
costs ~p as many random numbers. Outputs are scaled by 1 / (1 - p) as usual; eval mode is the identity.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def dropped_positions(count: int, p: float, device: torch.device) -> torch.Tensor:
    """Indices in [0, count) each chosen independently with probability p (sorted)."""
    expected = count * p
    draws = int(expected + 8 * math.sqrt(expected) + 16)  # almost always enough in one go
    positions = torch.empty(0, dtype=torch.long, device=device)
    last = -1
    while last < count:  # each position = previous + Geometric(p) gap (support 1, 2, ...)
        gaps = torch.empty(draws, device=device).geometric_(p).long()
        chunk = gaps.cumsum(0) + last
        positions = torch.cat([positions, chunk])
        last = int(chunk[-1])
    return positions[positions < count]


class SparseDropout(nn.Module):
    """`nn.Dropout(p)` in distribution, drawing random numbers only for the dropped elements."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = torch.full((x.numel(),), 1.0 / (1.0 - self.p), dtype=x.dtype, device=x.device)
        mask[dropped_positions(x.numel(), self.p, x.device)] = 0
        return x * mask.view(x.shape)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_sparse_dropout(model: nn.Module) -> int:
    """Swap the `nn.Dropout` modules inside PEFT's `lora_dropout` dicts for `SparseDropout`; returns the count."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if isinstance(dropout, nn.Dropout) and dropout.p > 0:
                dropouts[name] = SparseDropout(dropout.p)
                swapped += 1
    return swapped
