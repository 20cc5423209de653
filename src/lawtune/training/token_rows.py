"""Trainable token rows (PEFT's `trainable_token_indices`) without copying the whole embedding every step.

    swapped = use_fast_token_rows(peft_model)   # embedding lookups of trained tokens read the trained rows
    rows = trained_head_rows(head)              # (frozen nn.Linear head, index, values) for the fused loss

Why: the end-of-turn token's row of Gemma's tied embedding / output head is what decides when an answer
stops, and LoRA on the linear layers can reach it only through the hidden states (docs/training.md,
"Teaching the stop"). PEFT trains such rows as a small `trainable_tokens_delta` (k × H) and, in its forward,
rebuilds the full 262k × 640 weight with `index_copy` for the embedding *and* the tied head, every step —
a 670 MB copy twice per forward and a dense 670 MB gradient in backward, which made a CPU step ~20× slower.
Here the embedding output is the frozen lookup with the trained tokens' positions overwritten, and the
output head keeps the fused loss (`vocab_loss.linear_cross_entropy(rows=...)`). The parameters, and so the
saved adapter and every loader (`merge_and_unload`, vLLM, export), stay PEFT's own.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn


def _token_layer(module: Any) -> Any:
    """The PEFT TrainableTokensLayer inside a TrainableTokensWrapper (or None)."""
    return getattr(module, "token_adapter", None)


def _rows(layer: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(index, values) of the active adapter's trained rows."""
    active = [name for name in layer.active_adapters if name in layer.token_indices]
    if len(active) != 1 or layer.merged or layer.disable_adapters:
        return None
    name = active[0]
    values = layer.trainable_tokens_delta[name]
    index = torch.tensor(layer.token_indices[name], device=values.device)
    return index, values


def trained_head_rows(head: Any) -> tuple[nn.Linear, torch.Tensor, torch.Tensor] | None:
    """For an output head wrapped by PEFT's trainable tokens over a frozen bias-free Linear: (linear, index, values)."""
    layer = _token_layer(head)
    if layer is None or type(layer.base_layer) is not nn.Linear:
        return None
    base = layer.base_layer
    rows = _rows(layer)
    if rows is None or base.bias is not None or base.weight.requires_grad:
        return None
    return base, *rows


def _fast_embedding_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    rows = _rows(self)
    if rows is None:  # merged, disabled or several adapters: PEFT's own (slow but general) path
        return self.forward_adapters(x, self.active_adapters, *args, **kwargs)
    index, values = rows
    out = self.base_layer(x, *args, **kwargs)  # frozen lookup (Gemma's embedding scales it inside)
    scale = self._get_embed_scale()
    values = values.to(out.dtype) * (scale.to(out.dtype) if scale is not None else 1)
    for row, token in enumerate(index.tolist()):
        out = torch.where((x == token).unsqueeze(-1), values[row], out)
    return out


def use_fast_token_rows(model: nn.Module) -> int:
    """Give every trainable-token embedding layer the cheap forward; returns how many were changed."""
    count = 0
    for module in model.modules():
        layer = _token_layer(module)
        if layer is not None and isinstance(layer.base_layer, nn.Embedding) and not layer.tied_adapter:
            layer.forward = types.MethodType(_fast_embedding_forward, layer)
            count += 1
    return count
