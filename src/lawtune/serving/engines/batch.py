"""The tensor side of continuous batching: sequences join and leave a running decode batch.

Used by `lawtune.serving.engines.local.LocalEngine` from its worker thread (never from the event loop):

    batch = DecodeBatch(model)          # a PeftModel with several adapters: each row names its own
    first = batch.join(seq)             # prefill the prompt alone, merge its KV cache into the batch
    while batch.sequences:
        tokens = batch.step()           # one new token for every sequence, all in one forward pass
        batch.remove([s for s in batch.sequences if done(s)])

Why it gives the same greedy tokens as running a prompt alone:
- a prompt is prefilled alone (batch of one, no padding), exactly as `model.generate` does, projecting only its
  last position onto the vocabulary (`logits_to_keep=1`, as `model.generate` does too);
- the batch's KV cache is left-padded to a common length; padding columns are zeros in the attention mask,
  so they get no attention weight;
- every row carries its own `position_ids` (its count of real tokens), so RoPE sees the positions it would
  see alone, while `cache_position` indexes the shared (padded) cache columns;
- all cache layers are full (`DynamicLayer`), so sliding-window layers are windowed by the mask, computed
  from the same positions as alone.
What can differ is floating-point summation order in batched matmuls, which only matters at a near-tie
between the two best tokens (the benchmark prints the logit margin where that happens).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from lawtune.modeling.decoding import DecodingPolicy, penalize
from lawtune.modeling.grammar import grammar_mask


@dataclass(eq=False)  # identity, not field equality: two requests may look the same
class Sequence:
    """One request's decoding state. `pending` is the last sampled token, not yet in the KV cache."""

    prompt_ids: list[int]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    generated: list[int] = field(default_factory=list)
    pending: int | None = None
    cached: int = 0  # real tokens of this sequence held in the cache (= its next position id)
    generator: torch.Generator | None = None
    # repetition control (the same `penalize` model.generate runs through its logits processor); None = off
    decoding: DecodingPolicy | None = None
    stop_ids: frozenset[int] = frozenset()
    top_k: int = 0  # 0 = off
    min_p: float = 0.0  # 0 = off
    logit_bias: dict[int, float] = field(default_factory=dict)
    # an llguidance LLMatcher (response_format, tool_choice) or a LazyCall (tool_choice auto): only tokens it allows
    # are picked (modeling.grammar.grammar_mask)
    grammar: Any = None
    logprobs: int | None = None  # k: record the picked token's raw logprob and the k best in `last_logprobs`
    last_logprobs: tuple[float, list[tuple[int, float]]] | None = None
    adapter: str | None = None  # the PEFT adapter of this row ("__base__": none); None: a plain model

    def __post_init__(self) -> None:
        if self.temperature > 0:
            self.generator = torch.Generator()
            if self.seed is None:
                self.generator.seed()  # nondeterministic, and leaves torch's global generator alone
            else:
                self.generator.manual_seed(self.seed)


def pick_token(logits: torch.Tensor, seq: Sequence) -> int:
    """Greedy when temperature is 0, else temperature + top-k + min-p + top-p sampling with the sequence's
    own generator.

    Before that, in order: the raw logprobs when asked (the model's own distribution, as vLLM reports by
    default), the repetition control on the answer so far (as in `model.generate`), `logit_bias`, and the
    grammar's mask (response_format)."""
    if seq.logprobs is not None:
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        top = torch.topk(logprobs, seq.logprobs) if seq.logprobs else None
        top_pairs = list(zip(top.indices.tolist(), top.values.tolist())) if top is not None else []
    # no penalty inside a tool-call block of the lazy call grammar (lawtune.tools.constrain.LazyCall)
    if seq.decoding is not None and not getattr(seq.grammar, "in_block", False):
        # the lazy grammar's answer after tool results does not count digits (LazyCall.penalized)
        history = seq.grammar.penalized(seq.generated) if hasattr(seq.grammar, "penalized") else seq.generated
        logits = penalize(logits, history, seq.decoding, seq.stop_ids)
    if seq.logit_bias:
        logits = logits.float().clone()
        ids = torch.tensor(list(seq.logit_bias), dtype=torch.long)
        logits[ids] += torch.tensor(list(seq.logit_bias.values()), dtype=logits.dtype)
    if seq.grammar is not None:
        allowed = grammar_mask(seq.grammar, logits.shape[-1])  # None: free text under tool_choice auto
        if allowed is not None:
            logits = logits.float().masked_fill(~allowed, float("-inf"))
    token = _choose(logits, seq)
    if seq.logprobs is not None:
        seq.last_logprobs = (float(logprobs[token]), top_pairs)
    if seq.grammar is not None:
        seq.grammar.consume_token(token)
    return token


def _choose(logits: torch.Tensor, seq: Sequence) -> int:
    if seq.temperature <= 0:
        return int(torch.argmax(logits))
    scaled = logits.float() / seq.temperature
    if 0 < seq.top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, seq.top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if seq.min_p > 0:
        probs = probs * (probs >= seq.min_p * probs.max())
        probs = probs / probs.sum()
    if seq.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least the best token)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < seq.top_p
        sorted_probs = sorted_probs * keep
        return int(order[torch.multinomial(sorted_probs, 1, generator=seq.generator)])
    return int(torch.multinomial(probs, 1, generator=seq.generator))


class TransposedHead(torch.nn.Module):
    """The output projection with its weight stored transposed ([hidden, vocab], contiguous).

    With a 262k-token vocabulary the output projection is most of a decode step's work. For a handful of
    rows, `x @ W_t` on the transposed copy runs about 1.6x faster on CPU than `linear(x, W)` on the
    [vocab, hidden] layout the tied embedding needs (measured: 8 rows, 52 ms vs 85 ms, Gemma 3 270M, fp32).
    Costs one extra copy of the head weight; the model is used for inference only, so untying is safe.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.weight_t = torch.nn.Parameter(weight.detach().t().contiguous(), requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = hidden @ self.weight_t
        return out if self.bias is None else out + self.bias


def transpose_output_head(model: Any) -> None:
    """Swap the model's output projection for a `TransposedHead` (same values, faster small-batch layout)."""
    head = model.get_output_embeddings()
    if isinstance(head, torch.nn.Linear):
        model.set_output_embeddings(TransposedHead(head.weight, head.bias))


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    if width == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = width
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class DecodeBatch:
    """The running batch of one model: a left-padded KV cache, its attention mask and the sequences."""

    def __init__(self, model: Any, *, last_logits_only: bool = True):
        import inspect

        self.model = model
        # transformers 5.2x renamed `past_key_values` to `cache` (the old name warns until 5.40)
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PeftModel's takes **kwargs
        params = inspect.signature(inner.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        # a prefill needs the logits of the prompt's last position only (as model.generate asks for them): the
        # others cost prompt × vocabulary × hidden in the output head (with a 262k vocabulary about as much as
        # all decoder layers of a 270M model) and a prompt × 262k logits tensor. `last_logits_only=False` is
        # the old full projection, kept for benchmarks/torch_prefill.py's before/after.
        self._prefill_kwargs = {"logits_to_keep": 1} if last_logits_only and "logits_to_keep" in params else {}
        self.sequences: list[Sequence] = []
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: keys, values [B, H, T, D]
        self.mask: torch.Tensor | None = None  # [B, T] 1 = real token, 0 = padding
        self.last_logits: torch.Tensor | None = None

    @torch.inference_mode()
    def join(self, seq: Sequence) -> int:
        """Prefill `seq`'s prompt alone, pick its first token, and merge its cache into the batch."""
        cache = DynamicCache()
        ids = torch.tensor([seq.prompt_ids])
        out = self.model(input_ids=ids, use_cache=True, **{self._cache_kwarg: cache}, **self._adapters([seq]),
                         **self._prefill_kwargs)
        token = pick_token(out.logits[0, -1], seq)
        seq.pending, seq.cached = token, len(seq.prompt_ids)
        seq.generated.append(token)
        new_layers = [(layer.keys, layer.values) for layer in cache.layers]
        new_mask = torch.ones(1, len(seq.prompt_ids), dtype=torch.long)
        if not self.sequences:
            self.layers, self.mask = new_layers, new_mask
        else:
            old_len, new_len = self.mask.shape[1], new_mask.shape[1]
            width = max(old_len, new_len)
            self.layers = [
                (torch.cat([_pad_left(k, width - old_len, 2), _pad_left(nk, width - new_len, 2)], dim=0),
                 torch.cat([_pad_left(v, width - old_len, 2), _pad_left(nv, width - new_len, 2)], dim=0))
                for (k, v), (nk, nv) in zip(self.layers, new_layers)
            ]
            self.mask = torch.cat([_pad_left(self.mask, width - old_len, 1), _pad_left(new_mask, width - new_len, 1)])
        self.sequences.append(seq)
        return token

    @torch.inference_mode()
    def step(self) -> list[int]:
        """Feed every sequence's pending token, pick the next one for each; returns them in batch order."""
        batch = len(self.sequences)
        width = self.mask.shape[1]
        ids = torch.tensor([[seq.pending] for seq in self.sequences])
        positions = torch.tensor([[seq.cached] for seq in self.sequences])
        self.mask = torch.cat([self.mask, torch.ones(batch, 1, dtype=torch.long)], dim=1)
        cache = DynamicCache(ddp_cache_data=self.layers)
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=positions,
                         cache_position=torch.tensor([width]), use_cache=True, **{self._cache_kwarg: cache},
                         **self._adapters(self.sequences))
        self.layers = [(layer.keys, layer.values) for layer in cache.layers]
        self.last_logits = out.logits[:, -1]  # [B, V], kept for checks (tests, tie margins)
        tokens = []
        for row, seq in enumerate(self.sequences):
            token = pick_token(out.logits[row, -1], seq)
            seq.cached += 1
            seq.pending = token
            seq.generated.append(token)
            tokens.append(token)
        return tokens

    @staticmethod
    def _adapters(rows: list[Sequence]) -> dict[str, Any]:
        """PEFT's mixed-adapter batch: each row's adapter (or "__base__"), one copy of the base weights."""
        if rows[0].adapter is None:
            return {}
        return {"adapter_names": [seq.adapter for seq in rows]}

    def remove(self, leaving: list[Sequence]) -> None:
        """Drop finished or cancelled sequences and the padding columns no remaining row needs."""
        if not leaving:
            return
        keep = [row for row, seq in enumerate(self.sequences) if seq not in leaving]
        self.sequences = [self.sequences[row] for row in keep]
        if not keep:
            self.layers, self.mask = [], None
            return
        index = torch.tensor(keep)
        mask = self.mask.index_select(0, index)
        # columns that are padding in every remaining row can go (rows are left-padded, so they lead)
        first_real = int((mask.sum(dim=0) > 0).nonzero()[0])
        self.mask = mask[:, first_real:]
        self.layers = [(k.index_select(0, index)[:, :, first_real:], v.index_select(0, index)[:, :, first_real:])
                       for k, v in self.layers]
