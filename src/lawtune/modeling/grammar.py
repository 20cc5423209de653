"""llguidance's view of a Hugging Face tokenizer, shared by every grammar-constrained decoder.

    from lawtune.modeling.grammar import ll_tokenizer
    ll = ll_tokenizer(tokenizer, stop_ids)     # built once per tokenizer, then cached
    allowed = grammar_mask(matcher, vocab)     # bool tensor: the tokens the matcher allows next (None: all)

Every constrained decoder uses them: the server's batcher (response_format), tool calls (`lawtune.tools.constrain`) and citations under `--kb`
(`lawtune.kb.cite_constrain`). It lives below both so neither package imports the other.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

_TOKENIZERS: dict[int, Any] = {}
_BITS: Any = None  # the 8 bit values of a bitmask byte, as a uint8 tensor (torch is imported on first use)
_FIRST_ROWS: dict[tuple[int, int], Any] = {}
_LOCK = threading.Lock()


def ll_tokenizer(tokenizer: Any, stop_ids: Iterable[int]) -> Any:
    """llguidance's view of a HF tokenizer, built once per tokenizer (a 262k vocabulary takes a second)."""
    with _LOCK:
        key = id(tokenizer)
        if key not in _TOKENIZERS:
            import llguidance.hf

            _TOKENIZERS[key] = llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer), eos_token=list(stop_ids))
        return _TOKENIZERS[key]


def grammar_mask(matcher: Any, vocab: int) -> Any:
    """The tokens a matcher allows next, as a bool tensor over the model's `vocab` logits, or None when every one
    of them is allowed. Rows past the tokenizer's vocabulary (a model's padding rows) are never allowed.

    An llguidance matcher gives a bitmask over the tokenizer's vocabulary, unpacked here. A matcher with a tensor
    mask of its own (`allowed(vocab)` → a bool tensor over `vocab`, or None for any of the tokenizer's
    `vocab_size` tokens: `lawtune.tools.constrain.LazyCall`) is read directly, with no bitmask in between."""
    import torch

    own = getattr(matcher, "allowed", None)
    if own is not None:
        allowed = own(vocab)
        if allowed is not None:
            return allowed
        return None if vocab <= matcher.vocab_size else _first_rows(matcher.vocab_size, vocab)
    global _BITS
    if _BITS is None:
        _BITS = torch.tensor([1 << bit for bit in range(8)], dtype=torch.uint8)
    bits = torch.frombuffer(bytearray(matcher.compute_bitmask()), dtype=torch.uint8)
    allowed = (bits.unsqueeze(1) & _BITS).ne(0).flatten()
    if allowed.shape[0] >= vocab:
        return allowed[:vocab]
    return torch.cat([allowed, allowed.new_zeros(vocab - allowed.shape[0])])


def _first_rows(count: int, vocab: int) -> Any:
    """A bool tensor over `vocab` rows allowing the first `count` (cached: never written to by its users)."""
    import torch

    key = (count, vocab)
    if key not in _FIRST_ROWS:
        _FIRST_ROWS[key] = torch.arange(vocab) < count
    return _FIRST_ROWS[key]
