"""Cross-entropy over a large vocabulary without a backward pass through the full output projection.

    loss_sum = linear_cross_entropy(hidden, weight, targets, filter_eps=1e-6)   # hidden: (n, H), weight: (V, H)

Same value as `F.cross_entropy(hidden @ weight.T, targets, reduction="sum")`; its gradient with respect to
`hidden` is computed in the forward pass, while the logits are at hand, and handed back in backward. The
output weight must be frozen (LoRA trains adapters, not the tied 262k × 640 embedding), so no weight gradient
is ever needed.

Why: with Gemma 3's 262k-entry vocabulary the output projection is half of a LoRA step's matrix work on a
CPU, and its backward (`(softmax - onehot) @ weight`) is as expensive as its forward. Almost all of that
softmax is vanishingly small, so the backward is restricted to the vocabulary columns where some row of
the chunk has probability ≥ `filter_eps` (plus the targets). This is the gradient filtering of Cut
Cross-Entropy (Wijmans et al., 2024, "Cut Your Losses in Large-Vocabulary Language Models"). On the
default model and the legal data, 1e-6 keeps 20-27 % of the columns, and each row's gradient differs from
the exact one by under 0.6 % (relative): the order of bf16 rounding, which bf16 autocast would also
introduce. `filter_eps=0` gives the exact gradient. The loss value is never filtered.
"""

from __future__ import annotations

import torch


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, filter_eps: float,
                grad: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """Loss sum of these rows; writes their hidden-state gradient into `grad`. Returns (loss, columns used)."""
    logits = hidden.float() @ weight.float().T  # (c, V): one matmul, so the weight is streamed once
    target_logits = logits.gather(1, targets[:, None]).squeeze(1)
    log_sums, column_max = [], None
    # Softmax in place, a few rows at a time: each slice stays in the CPU's cache across its passes.
    for probs in logits.split(_CACHE_ROWS):
        peak = probs.amax(1, keepdim=True)
        probs.sub_(peak).exp_()
        sums = probs.sum(1, keepdim=True)
        log_sums.append(sums.log().add_(peak).squeeze(1))
        if grad is not None:
            probs.div_(sums)
            if filter_eps > 0:
                rows_max = probs.amax(0)
                column_max = rows_max if column_max is None else torch.maximum(column_max, rows_max)
    loss = torch.cat(log_sums).sub(target_logits).sum()
    if grad is None:
        return loss, 0
    probs, head, target_columns = logits, weight, targets
    if filter_eps > 0:
        columns = torch.cat([(column_max >= filter_eps).nonzero().squeeze(1), targets]).unique()  # sorted
        probs, head = logits.index_select(1, columns), weight.index_select(0, columns)
        target_columns = torch.searchsorted(columns, targets)
    rows = torch.arange(len(targets), device=targets.device)
    probs[rows, target_columns] -= 1.0  # d loss / d logits = softmax - onehot
    grad.copy_(probs @ head.float())
    return loss, probs.shape[1]


_CACHE_ROWS = 32  # 32 rows × 262k floats = 32 MiB


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, filter_eps, chunk_rows):  # noqa: D102
        grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        total = hidden.new_zeros((), dtype=torch.float32)
        with torch.autocast(hidden.device.type, enabled=False):  # logits and softmax always in fp32
            for start in range(0, hidden.shape[0], chunk_rows):
                rows = slice(start, start + chunk_rows)
                loss, _ = _chunk_loss(hidden[rows], weight, targets[rows], filter_eps,
                                      None if grad is None else grad[rows])
                total += loss
        if grad is not None:
            ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        (grad,) = ctx.saved_tensors
        return grad * grad_output.to(grad.dtype), None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         filter_eps: float = 1e-6, chunk_rows: int = 1024) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` against `targets`; `weight` must not require grad."""
    if weight.requires_grad:
        raise ValueError("linear_cross_entropy computes no weight gradient; the output weight must be frozen")
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    return _LinearCrossEntropy.apply(hidden, weight, targets, filter_eps, chunk_rows)
