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

In bf16 training (`bf16: auto` on CPUs with AVX512-BF16/AMX and on GPUs; `bf16=True`, or bf16 autocast around the call)
the two projections run in bf16 on a bf16 copy of the frozen weight, made once; the logits stay in bf16 and
each slice of rows is turned into float32 for its softmax, whose probabilities go back into the bf16 buffer
for the backward projection — what autocast does to any linear layer and what a model's own bf16 head
gives its loss. On an AVX512-BF16 CPU the projection onto the 262k vocabulary was 3.2× faster (512 rows:
559 ms vs 1769 ms) and the head half of a training step. Outside autocast everything stays float32.

The big buffer (the logits) is reused from one call to the next on a CPU: a fresh allocation of hundreds of MB
is faulted in page by page, and that cost as much as the work done in it (one thread: 94 → 106 supervised
tokens/s on a training step of the default model). The filtered backward's kept columns and kept head rows are
written into that same buffer (`_keep_columns_in_place`), not into buffers of their own: in float32, 1,024 rows
keeping a quarter of the columns, that is ~440 MiB less at a training step's peak, with the same bits.

A few rows of the output weight may train (`rows=(index, values)`: PEFT's trainable tokens, e.g. the
end-of-turn row): their logits come from `values` instead of `weight`, and `values` gets its exact gradient,
so the frozen 262k-row weight is never copied or differentiated.
"""

from __future__ import annotations

import math

import torch

from lawtune.memory import page_out


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, filter_eps: float,
                grad: torch.Tensor | None, rows: tuple[torch.Tensor, torch.Tensor] | None = None,
                rows_grad: torch.Tensor | None = None, head: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Loss sum of these rows; writes their hidden-state gradient into `grad` and adds the trained rows'
    gradient to `rows_grad`. Returns (loss, columns used). `head`: the weight in the dtype the two
    projections run in (a bf16 copy under autocast); default: `weight` in float32.

    The (rows × vocab) logits live in `head`'s dtype, in a buffer reused across calls; each slice of
    `_CACHE_ROWS` rows is turned into float32 for its softmax and its probabilities (minus the one-hot of
    the target) are written back in place, ready for the backward projection, which takes them in that
    dtype anyway."""
    head = weight.float() if head is None else head
    rows_count, vocab = hidden.shape[0], head.shape[0]
    logits = torch.mm(hidden.to(head.dtype), head.T, out=_WORKSPACE.take("logits", (rows_count, vocab), head))
    trained_logits = hidden.float() @ rows[1].float().T if rows is not None else None
    log_sums, target_logits, column_max = [], [], None
    # Softmax a few rows at a time, in float32: each slice stays in the CPU's cache across its passes.
    for start in range(0, rows_count, _CACHE_ROWS):
        stored = logits[start:start + _CACHE_ROWS]
        probs = stored if stored.dtype == torch.float32 else _WORKSPACE.take("slice", stored.shape, stored, torch.float32)
        if probs is not stored:
            probs.copy_(stored)
        if trained_logits is not None:
            probs[:, rows[0]] = trained_logits[start:start + _CACHE_ROWS]  # the trained rows replace the frozen ones
        slice_targets = targets[start:start + _CACHE_ROWS]
        target_logits.append(probs.gather(1, slice_targets[:, None]).squeeze(1))
        peak = probs.amax(1, keepdim=True)
        probs.sub_(peak).exp_()
        sums = probs.sum(1, keepdim=True)
        log_sums.append(sums.log().add_(peak).squeeze(1))
        if grad is None:
            continue
        probs.div_(sums)
        if filter_eps > 0:
            rows_max = probs.amax(0)
            column_max = rows_max if column_max is None else torch.maximum(column_max, rows_max)
        within = torch.arange(probs.shape[0], device=probs.device)
        probs[within, slice_targets] -= 1.0  # d loss / d logits = softmax - onehot
        if probs is not stored:
            stored.copy_(probs)
    loss = torch.cat(log_sums).sub(torch.cat(target_logits)).sum()
    if grad is None:
        return loss, 0
    rows_index = rows[0] if rows is not None else targets[:0]
    probs, trained_columns = logits, rows_index
    if filter_eps > 0:
        kept = (column_max >= filter_eps).nonzero().squeeze(1)
        columns = torch.cat([kept, targets, rows_index]).unique()  # sorted; trained rows always kept
        probs = _keep_columns_in_place(logits, columns)
        head = torch.index_select(head, 0, columns, out=_head_rows_buffer(logits, probs, head, len(columns)))
        trained_columns = torch.searchsorted(columns, rows_index)
    grad.copy_(probs @ head)
    if rows is not None:
        index, values = rows
        trained = probs[:, trained_columns].float()  # (c, k): d loss / d logits of the trained rows
        grad.add_(trained @ (values.float() - weight[index].float()))  # they used `values`, not the frozen rows
        rows_grad.add_(trained.T @ hidden.float())
    return loss, probs.shape[1]


def _keep_columns_in_place(logits: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """`logits[:, columns]` (columns sorted), written over the start of `logits`' own memory: no second
    (rows × kept columns) buffer (268 MiB in float32 for 1,024 rows keeping a quarter of Gemma's 262k columns).

    Safe in place because a row's kept values land at or before where that row began (kept ≤ vocabulary
    columns), so a slice of rows, gathered into a small scratch first, overwrites only rows already read. The
    values are the same as a fresh tensor's, in the same layout, from the same 64-byte-aligned start, so the
    backward projection gives the same bits (tests/training/test_vocab_loss.py)."""
    rows_count, vocab = logits.shape
    used = columns.shape[0]
    kept = logits.view(-1)[: rows_count * used].view(rows_count, used)
    scratch = _WORKSPACE.take("gather", (min(_CACHE_ROWS, rows_count), used), logits)
    for start in range(0, rows_count, _CACHE_ROWS):
        part = logits[start:start + _CACHE_ROWS]
        gathered = torch.index_select(part, 1, columns, out=scratch[: part.shape[0]])
        kept[start:start + part.shape[0]].copy_(gathered)
    return kept


_ALIGN_BYTES = 64  # what torch's CPU allocator gives every tensor; the kept head rows start on such a boundary


def _head_rows_buffer(logits: torch.Tensor, kept: torch.Tensor, head: torch.Tensor, used: int) -> torch.Tensor:
    """Room for the `used` kept rows of `head`: the tail of the logits buffer behind the kept columns where it
    fits (it does for all but a few rows: rows × (vocabulary − kept) ≥ kept × hidden), else a buffer of its own."""
    shape = (used, head.shape[1])
    buffer = logits.view(-1)
    if head.dtype == logits.dtype and logits.is_contiguous() and buffer.data_ptr() % _ALIGN_BYTES == 0:
        align = _ALIGN_BYTES // logits.element_size()
        start = -(-kept.numel() // align) * align
        if start + used * head.shape[1] <= buffer.numel():
            return buffer[start:start + used * head.shape[1]].view(shape)
    return _WORKSPACE.take("head", shape, head)


class _Workspace:
    """Large scratch tensors kept from one call to the next. A CPU allocation of hundreds of MB is mapped
    fresh from the OS and faulted in page by page on first touch, which cost as much as the softmax over it
    (logits of 347 rows: 106 ms to convert into a new float32 tensor, 19 ms into a reused one)."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None
             ) -> torch.Tensor:
        """A contiguous tensor of this shape on `like`'s device, in `dtype` (default `like`'s); its contents
        are garbage. Valid until the next take(name)."""
        dtype, device = dtype or like.dtype, like.device
        if device.type != "cpu":
            return torch.empty(shape, dtype=dtype, device=device)  # CUDA's caching allocator reuses blocks itself
        size = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.dtype != dtype or buffer.numel() < size:
            self.buffers.pop(name, None)  # free the old one before allocating its successor
            buffer = self.buffers[name] = torch.empty(size, dtype=dtype)
        return buffer[:size].view(shape)


_CACHE_ROWS = 32  # 32 rows × 262k floats = 32 MiB
_WORKSPACE = _Workspace()
_BF16_COPIES: dict[int, tuple[torch.Tensor, int, torch.Tensor]] = {}  # id(weight) → (weight, version, bf16 copy)


def release_buffers() -> None:
    """Drop the reused buffers and the bf16 head copy (which also holds the model's fp32 head weight): called
    when training ends, so a later step in the same process (the demo's compare) does not carry ~1.5 GB."""
    _WORKSPACE.buffers.clear()
    _BF16_COPIES.clear()


def _bf16_copy(weight: torch.Tensor) -> torch.Tensor:
    """The frozen weight in bf16, converted once (again only if the weight was changed in place)."""
    cached = _BF16_COPIES.get(id(weight))
    if cached is not None and cached[0] is weight and cached[1] == weight._version:
        return cached[2]
    _BF16_COPIES.clear()  # one head at a time: a new weight (another model) replaces the old copy
    copy = weight.detach().to(torch.bfloat16)
    _BF16_COPIES[id(weight)] = (weight, weight._version, copy)
    # The float32 weight (Gemma's tied 262k × 640 embedding, 640 MiB) was just read in full; from here on only
    # the embedding lookup and the trained rows read it, a few rows a step. Loaded from .safetensors it is a
    # view of the mapped file, so its pages can leave the RSS and come back from the file where read.
    page_out(weight)
    return copy


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, filter_eps, chunk_rows, index, values, bf16):  # noqa: D102
        grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        rows = (index, values) if index is not None else None
        rows_grad = torch.zeros_like(values, dtype=torch.float32) if rows is not None and grad is not None else None
        total = hidden.new_zeros((), dtype=torch.float32)
        device = hidden.device.type
        if bf16 is None:
            bf16 = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16
        head = _bf16_copy(weight) if bf16 else None
        with torch.autocast(device, enabled=False):  # the softmax always in fp32; the projections as `head` is
            for start in range(0, hidden.shape[0], chunk_rows):
                part = slice(start, start + chunk_rows)
                loss, _ = _chunk_loss(hidden[part], weight, targets[part], filter_eps,
                                      None if grad is None else grad[part], rows, rows_grad, head)
                total += loss
        if grad is not None:
            ctx.save_for_backward(grad, rows_grad if rows_grad is not None else grad.new_empty(0))
            ctx.has_rows = rows_grad is not None
        return total

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        grad, rows_grad = ctx.saved_tensors
        values_grad = rows_grad * grad_output if ctx.has_rows else None
        return grad * grad_output.to(grad.dtype), None, None, None, None, None, values_grad, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         filter_eps: float = 1e-6, chunk_rows: int = 1024,
                         rows: tuple[torch.Tensor, torch.Tensor] | None = None, bf16: bool | None = None) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` against `targets`; `weight` must not require grad.

    `rows=(index, values)`: rows `index` of the weight are `values` instead (k × H, may require grad).
    `bf16`: run the projections in bf16; None: when bf16 autocast is on here (the Trainer's autocast covers
    only the model's forward, so the trainer says it explicitly).
    """
    if weight.requires_grad:
        raise ValueError("linear_cross_entropy computes no weight gradient; the output weight must be frozen")
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0 + (rows[1].sum() * 0.0 if rows is not None else 0.0)
    index, values = rows if rows is not None else (None, None)
    return _LinearCrossEntropy.apply(hidden, weight, targets, filter_eps, chunk_rows, index, values, bf16)
