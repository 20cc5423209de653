"""Continuous batching on llama.cpp: the same interface as `lawtune.serving.engines.batch.DecodeBatch`, over a GGUF.

Used by `lawtune.serving.engines.llama.LlamaCppEngine` from its worker thread:

    batch = LlamaCppBatch(Path("model-Q8_0.gguf"), max_sequences=8, context=4096)
    first = batch.join(seq)             # prefill the prompt into a free KV slot, pick its first token
    tokens = batch.step()               # one llama_decode for every running sequence: one token each
    batch.remove([...])                 # frees the slots (their KV cells) for the next requests

llama.cpp runs the forward pass on the quantized weights (fewer bytes per token than torch's dequantized
ones: the bandwidth a single stream is bound by), and every sequence of the batch in one `llama_decode`
(its `llama_batch` names each token's sequence and position). Each sequence has its own KV stream
(`kv_unified = false`), so `context` tokens are reserved per sequence and one long prompt cannot starve
the others. Tokens are picked in Python by the same `pick_token` as the torch engine (repetition control,
logit_bias, grammar masks, logprobs, sampling), on the logits llama.cpp returns.

Prefix reuse: a slot keeps its KV after its request leaves; a new prompt goes to the free slot that already
holds the longest prefix of it and prefills only the rest — the shared system or RAG instructions, and in a
follow-up question the whole conversation so far (llama.cpp's own server reuses its slots' prompts the same way).
When a *running* sequence holds a longer prefix (eight open-book questions arriving at once share the RAG
instructions, ~55 tokens, and none of the free slots holds them yet), its KV stream is copied into the new slot
(`llama_memory_seq_cp` across streams copies the whole buffer: ~75 MB for Gemma 3 270M at 4096 tokens, tens of
ms, less than prefilling the 55 tokens) and cut back to the shared prefix. A reused prefix is only kept when the
cache still holds the sliding window before it, as llama.cpp's server checks (with llama.cpp's default
`swa_full = true`, used here, the window cache keeps every cell and the check always passes; it guards a context
made with `swa_full = false`, whose window cache drops cells that fall out of the window).
"""

from __future__ import annotations

import ctypes
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from lawtune.errors import LawtuneError
from lawtune.serving.engines.batch import Sequence, pick_token


@contextmanager
def quiet_llama_cpp() -> Iterator[None]:
    """llama.cpp logs every tensor while loading: keep its errors only."""
    from llama_cpp import _logger

    level = _logger.logger.level
    _logger.logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        _logger.logger.setLevel(level)


def model_params(llama_cpp: Any) -> Any:
    """llama.cpp's model parameters, with its AMX kernels kept out of the way.

    A llama.cpp built natively on a CPU with AMX-INT8 (Sapphire Rapids and later: `pip install` compiles it with
    -march=native) repacks quantized weights into AMX buffers, and its AMX matrix multiply segfaults on the first
    forward pass of Q4_K_M models such as the default base (seen here: SIGSEGV in ggml_backend_amx_mul_mat;
    llama.cpp issue #20824, open). The extra buffer types are where AMX comes in, so a build that has AMX loads
    the weights without them: the plain AVX-512 kernels, no crash."""
    params = llama_cpp.llama_model_default_params()
    if "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace"):
        params.use_extra_bufts = False
    return params


# a shared prefix shorter than this is prefilled rather than copied from a running sequence's KV stream (a copy
# moves the whole stream; prefilling 16 tokens costs about as much: chosen, not tuned)
COPY_MIN_TOKENS = 16


def shared_prefix(held: list[int], ids: list[int]) -> int:
    """How many of `held`'s tokens start `ids`, at most all but the prompt's last (whose logits are needed)."""
    limit = min(len(held), len(ids) - 1)
    return next((i for i in range(limit) if held[i] != ids[i]), limit)


class LlamaCppBatch:
    """A llama.cpp model and context with one KV stream per running sequence."""

    def __init__(self, gguf: Path, *, max_sequences: int, context: int, threads: int | None = None,
                 lora: Path | None = None, prefill_chunk: int = 512, copy_running_prefix: bool = True):
        try:
            import llama_cpp
        except ImportError as error:
            raise LawtuneError("--engine llama.cpp needs llama.cpp's Python bindings: `pip install "
                               "'lawtune[export]'` (llama-cpp-python, which compiles llama.cpp: 5–10 minutes once)") from error
        self._ll = llama_cpp
        self.gguf, self.max_sequences, self.context = Path(gguf), max_sequences, context
        self.prefill_chunk = prefill_chunk
        self.copy_running_prefix = copy_running_prefix  # False: only free slots' prefixes (benchmarks' before)
        threads = threads or os.cpu_count() or 1
        with quiet_llama_cpp():
            llama_cpp.llama_backend_init()
            self._model = llama_cpp.llama_model_load_from_file(str(gguf).encode(), model_params(llama_cpp))
            if not self._model:
                raise LawtuneError(f"llama.cpp could not load {gguf} (not a GGUF file, or an architecture this "
                                   "llama.cpp build does not know)")
            self.context_train = int(llama_cpp.llama_model_n_ctx_train(self._model))
            params = llama_cpp.llama_context_default_params()
            params.n_seq_max = max_sequences
            params.kv_unified = False  # a KV stream per sequence: `context` tokens each, reserved up front
            params.n_ctx = context * max_sequences
            params.n_batch = params.n_ubatch = max(prefill_chunk, max_sequences)
            params.n_threads = params.n_threads_batch = threads
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise LawtuneError(f"llama.cpp could not create a context of {context} tokens × {max_sequences} "
                                   "sequences (out of memory? lower --max-context or --max-batch-size)")
            if lora is not None:
                self._adapter = llama_cpp.llama_adapter_lora_init(self._model, str(lora).encode())
                if not self._adapter:
                    raise LawtuneError(f"llama.cpp could not load the GGUF LoRA {lora} for {gguf}")
                adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapter)
                llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, (ctypes.c_float * 1)(1.0))
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self.vocab_size = int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self._model)))
        self._batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
        self.sequences: list[Sequence] = []
        self._slot: dict[int, int] = {}  # id(seq) → its sequence id (KV stream) in llama.cpp
        self._free = list(range(max_sequences))  # sequence ids (KV streams) not in use
        self._held: dict[int, list[int]] = {}  # slot → the tokens whose KV it holds (a free slot's: its last request's)
        self.reused_tokens = 0  # prompt tokens not prefilled because a slot held them (metrics, tests)
        self.copied_tokens = 0  # of those, tokens copied from a running sequence's KV stream
        self._swa = int(llama_cpp.llama_model_n_swa(self._model))  # sliding-window size; 0: none

    def close(self) -> None:
        ll = self._ll
        if self._batch is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            ll.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            ll.llama_model_free(self._model)
            self._model = None

    # -- the DecodeBatch interface ----------------------------------------------------------------------
    def join(self, seq: Sequence) -> int:
        """Prefill `seq`'s prompt into a free KV stream (in chunks of `prefill_chunk`), pick its first token."""
        if not self._free:
            raise RuntimeError("no free sequence slot (the engine admits at most max_sequences)")
        if len(seq.prompt_ids) >= self.context:
            raise RuntimeError(f"the prompt has {len(seq.prompt_ids)} tokens; this server's context per "
                               f"sequence is {self.context} (--max-context)")
        ids = seq.prompt_ids
        slot, reuse = self._best_slot(ids)
        self._free.remove(slot)
        source, shared = self._best_running(ids) if self.copy_running_prefix else (-1, 0)
        copied = shared >= reuse + COPY_MIN_TOKENS and self._window_holds(source, shared)
        if copied:  # the whole stream (llama.cpp copies across streams only whole), cut back below
            self._ll.llama_memory_seq_rm(self._memory, slot, -1, -1)
            self._ll.llama_memory_seq_cp(self._memory, source, slot, -1, -1)
            reuse = shared
        # keep the KV of the prompt's prefix that the slot holds; drop the rest (a partial removal can fail on
        # some caches, e.g. recurrent state: then the whole slot is prefilled again)
        if not (reuse and self._window_holds(slot, reuse)
                and self._ll.llama_memory_seq_rm(self._memory, slot, reuse, -1)):
            self._ll.llama_memory_seq_rm(self._memory, slot, -1, -1)
            reuse, copied = 0, False
        self._held[slot] = []  # until this request leaves, the slot's tokens are its own
        try:
            # quiet: after a copy llama.cpp logs the buffer copy and ~80 debug lines of its graph's inputs
            with quiet_llama_cpp():
                for start in range(reuse, len(ids), self.prefill_chunk):
                    chunk = ids[start:start + self.prefill_chunk]
                    for offset, token in enumerate(chunk):
                        position = start + offset
                        self._put(offset, token, position, slot, logits=position == len(ids) - 1)
                    self._decode(len(chunk))
            logits = self._logits(len(chunk) - 1)
        except BaseException:
            self._ll.llama_memory_seq_rm(self._memory, slot, -1, -1)
            self._free.append(slot)
            raise
        self.reused_tokens += reuse
        self.copied_tokens += reuse if copied else 0
        token = pick_token(logits, seq)
        seq.pending, seq.cached = token, len(ids)
        seq.generated.append(token)
        self._slot[id(seq)] = slot
        self.sequences.append(seq)
        return token

    def _best_slot(self, ids: list[int]) -> tuple[int, int]:
        """The free slot whose cached tokens share the longest prefix with `ids` (the lowest id on a tie), and
        how many of its tokens to keep: at most all but the prompt's last, whose logits are needed."""
        best, best_reuse = min(self._free), 0
        for slot in sorted(self._free):
            reuse = shared_prefix(self._held.get(slot, []), ids)
            if reuse > best_reuse:
                best, best_reuse = slot, reuse
        return best, best_reuse

    def _best_running(self, ids: list[int]) -> tuple[int, int]:
        """The running sequence's slot whose KV shares the longest prefix with `ids`, and that length (0: none)."""
        best, best_shared = -1, 0
        for seq in self.sequences:
            shared = shared_prefix((list(seq.prompt_ids) + seq.generated)[:seq.cached], ids)
            if shared > best_shared:
                best, best_shared = self._slot[id(seq)], shared
        return best, best_shared

    def _window_holds(self, slot: int, reuse: int) -> bool:
        """Whether `slot`'s cache still holds what a sequence continuing at position `reuse` attends to: a
        sliding-window cache drops cells older than its window as the sequence grows (llama.cpp's server makes
        the same check before it reuses a slot's prompt)."""
        oldest = self._ll.llama_memory_seq_pos_min(self._memory, slot)
        return 0 <= oldest <= max(0, reuse - self._swa) if self._swa else oldest == 0

    def step(self) -> list[int]:
        """Feed every sequence's pending token in one llama_decode; pick the next one for each."""
        # tokens in ascending sequence id: llama.cpp splits a batch whose per-sequence KV streams come out of
        # order into several forward passes (measured: 8 sequences, 55 tokens/s out of order, 132 in order)
        order = sorted(range(len(self.sequences)), key=lambda row: self._slot[id(self.sequences[row])])
        for index, row in enumerate(order):
            seq = self.sequences[row]
            if seq.cached >= self.context:
                raise RuntimeError(f"a sequence reached this server's context of {self.context} tokens")
            self._put(index, seq.pending, seq.cached, self._slot[id(seq)], logits=True)
        self._decode(len(self.sequences))
        # every row's logits, read in place (no copy of 8 × a 262k vocabulary): valid until the next decode
        table = torch.from_numpy(np.ctypeslib.as_array(self._ll.llama_get_logits(self._ctx),
                                                       shape=(len(order), self.vocab_size)))
        position = {row: index for index, row in enumerate(order)}
        tokens = []
        for row, seq in enumerate(self.sequences):
            token = pick_token(table[position[row]], seq)
            seq.cached += 1
            seq.pending = token
            seq.generated.append(token)
            tokens.append(token)
        return tokens

    def remove(self, leaving: list[Sequence]) -> None:
        for seq in leaving:
            slot = self._slot.pop(id(seq), None)
            if slot is None:
                continue
            # the slot keeps its KV: a later prompt that starts the same way (the system prompt, the RAG
            # instructions, the conversation so far in a follow-up) prefills only what follows
            self._held[slot] = (list(seq.prompt_ids) + seq.generated)[:seq.cached]
            self._free.append(slot)
        self.sequences = [seq for seq in self.sequences if id(seq) in self._slot]

    # -- llama.cpp calls ----------------------------------------------------------------------------------
    def _put(self, index: int, token: int, position: int, slot: int, *, logits: bool) -> None:
        batch = self._batch
        batch.token[index], batch.pos[index] = token, position
        batch.n_seq_id[index], batch.seq_id[index][0] = 1, slot
        batch.logits[index] = logits

    def _decode(self, n_tokens: int) -> None:
        self._batch.n_tokens = n_tokens
        status = self._ll.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} "
                               f"({'no KV space left' if status == 1 else 'see the llama.cpp log'})")

    def _logits(self, index: int) -> torch.Tensor:
        pointer = self._ll.llama_get_logits_ith(self._ctx, index)
        # a copy: llama.cpp reuses the buffer at the next decode
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(self.vocab_size,)).copy())
