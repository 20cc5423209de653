"""llguidance's view of a Hugging Face tokenizer, shared by every grammar-constrained decoder.

    from lawtune.modeling.grammar import ll_tokenizer
    ll = ll_tokenizer(tokenizer, stop_ids)     # built once per tokenizer, then cached
    allowed = grammar_mask(matcher, vocab)     # bool tensor: the tokens the matcher allows next

Every constrained decoder uses them: the server's batcher (response_format), tool calls (`lawtune.tools.constrain`) and citations under `--kb`
(`lawtune.kb.cite_constrain`). It lives below both so neither package imports the other.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

_TOKENIZERS: dict[int, Any] = {}
_BITS: Any = None  # the 8 bit values of a bitmask byte, as a uint8 tensor (torch is imported on first use)
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
    """The tokens an llguidance matcher allows next, as a bool tensor over the model's `vocab` logits
    (its bitmask covers the tokenizer's vocabulary; extra logit rows of the model are never allowed)."""
    import torch

    global _BITS
    if _BITS is None:
        _BITS = torch.tensor([1 << bit for bit in range(8)], dtype=torch.uint8)
    bits = torch.frombuffer(bytearray(matcher.compute_bitmask()), dtype=torch.uint8)
    allowed = (bits.unsqueeze(1) & _BITS).ne(0).flatten()
    if allowed.shape[0] >= vocab:
        return allowed[:vocab]
    return torch.cat([allowed, allowed.new_zeros(vocab - allowed.shape[0])])
