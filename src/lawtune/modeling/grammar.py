"""llguidance's view of a Hugging Face tokenizer, shared by every grammar-constrained decoder.

    from lawtune.modeling.grammar import ll_tokenizer
    ll = ll_tokenizer(tokenizer, stop_ids)     # built once per tokenizer, then cached

Both constrained decoders use it: tool calls (`lawtune.tools.constrain`) and citations under `--kb`
(`lawtune.kb.cite_constrain`). It lives below both so neither package imports the other.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

_TOKENIZERS: dict[int, Any] = {}
_LOCK = threading.Lock()


def ll_tokenizer(tokenizer: Any, stop_ids: Iterable[int]) -> Any:
    """llguidance's view of a HF tokenizer, built once per tokenizer (a 262k vocabulary takes a second)."""
    with _LOCK:
        key = id(tokenizer)
        if key not in _TOKENIZERS:
            import llguidance.hf

            _TOKENIZERS[key] = llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer), eos_token=list(stop_ids))
        return _TOKENIZERS[key]
