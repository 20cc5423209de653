"""The local engine: one base model in memory, any number of LoRA adapters on it, continuous batching.

    engine = LocalEngine("runs/demo", lora_modules={"contracts": "runs/contracts"})   # + the base
    await engine.start()
    engine.model_ids        # ["demo", "contracts", "demo:base"]: one copy of the base weights
    async for event in engine.generate(GenerationRequest(prompt=engine.prompt("demo", messages=...), ...)): ...

Every served model is a row adapter in one PEFT model (PEFT's mixed-adapter batches: each row of the batch
names its adapter, `"__base__"` for none), so a request for the base and one for each adapter run in the
same forward pass over one copy of the base weights (vLLM's `--lora-modules`).

The engine decodes with the same policy as eval and infer (`lawtune.modeling.decoding`): repetition
control on the answer's tokens, and the repetition stop (finish reason "repetition"; the API says
finish_reason "stop" with stop_reason "repetition"). `LocalEngine(decoding=...)` sets the defaults; a
request's penalties override them. `response_format` is constrained decoding with llguidance (its mask on
the logits each step; the repetition stop is off then, since a cut would break the JSON).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from lawtune.errors import LawtuneError
from lawtune.modeling.decoding import DecodingPolicy, advance
from lawtune.serving.engines import (EngineError, EngineTimeout, Finished, GenerationEvent, GenerationRequest, Prompt,
                                     TextDelta, TokenLogprob, Usage)
from lawtune.serving.errors import ApiError

log = logging.getLogger("lawtune.serving")
BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}  # json.dumps's


@dataclass(eq=False)
class _ChoiceJob:
    """One choice of a request inside the engine: the worker thread posts events to its asyncio queue."""

    request: GenerationRequest
    index: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    grammar: Any = None  # llguidance LLMatcher
    cancelled: bool = False  # set from the event loop when the client goes away; read by the worker
    seq: Any = None  # batch.Sequence once admitted
    stream: Any = None  # decoding.TextStream once admitted
    logprobs: list[TokenLogprob] = field(default_factory=list)  # generated, not yet posted

    @property
    def deadline(self) -> float:
        return self.request.deadline if self.request.deadline is not None else math.inf

    def post(self, event: GenerationEvent | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


@dataclass
class _Served:
    """One served model id: which adapter row it is and how it formats prompts."""

    adapter: str | None  # the PEFT adapter name, BASE_ROW, or None (a plain model without adapters)
    chat: Any  # ChatFormat
    parent: str | None = None  # the base model's id, for adapters (vLLM's `parent` in /v1/models)
    root: str = ""  # where the weights (or the adapter) come from


class LocalEngine:
    """Serves a run folder (its adapter, other runs' adapters on the same base, and the base itself) with
    continuous batching.

    All model work happens in one worker thread, so the event loop never waits on torch. Each loop turn the
    worker admits waiting requests into free slots (prefilling each prompt alone), then advances every
    running sequence by one token in a single batched forward pass. A sequence leaves the batch when it
    ends, passes its deadline or its client goes away — checked before every step.
    """

    def __init__(self, spec: str | Path, *, lora_modules: dict[str, str] | None = None, name: str | None = None,
                 max_batch_size: int = 8, dtype: str = "auto", serve_base: bool = True, adapter: str = "best",
                 max_context: int | None = None, decoding: DecodingPolicy | None = None):
        self.spec, self.dtype, self.adapter, self.name = spec, dtype, adapter, name
        self.lora_modules = dict(lora_modules or {})
        self.decoding = decoding or DecodingPolicy()
        self.max_batch_size, self.serve_base, self.max_context = max_batch_size, serve_base, max_context
        self.model_ids: list[str] = []
        self.model: Any = None
        self.batch: Any = None  # batch.DecodeBatch
        self._served: dict[str, _Served] = {}
        self._jobs: dict[int, _ChoiceJob] = {}  # id(seq) → job
        self._pending: collections.deque[_ChoiceJob] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._ll_tokenizer: Any = None  # llguidance's view of the tokenizer, built on first use
        self._ll_lock = threading.Lock()
        # how choices ended, for metrics and tests (written by the worker thread only)
        self.counts = {"finished": 0, "cancelled": 0, "timed_out": 0, "failed": 0}
        self.peak_batch_size = 0  # the most sequences ever generated together (reset it to watch a window)
        self.progress = 0  # prefills + decode steps done: the gateway tells a stalled engine from a long answer

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._run, name="lawtune-engine", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        from lawtune.modeling.loading import load_base, open_chat, resolve_dtype
        from lawtune.modeling.runs import is_run_dir, read_run, resolve_model_path
        from lawtune.serving.engines.batch import DecodeBatch, transpose_output_head

        path = Path(self.spec)
        runs: dict[str, Any] = {}
        main = None
        if is_run_dir(path):
            main = read_run(path)
            base_path, primary = Path(main.base_model), self.name or path.name
            runs[primary] = main
            base_id = f"{primary}:base"
            base_chat = open_chat(main)
        else:
            base_path = resolve_model_path(self.spec)
            base_id = self.name or base_path.name
            base_chat = None
        for name, folder in self.lora_modules.items():
            run = read_run(folder)
            if Path(run.base_model).resolve() != base_path.resolve():
                raise LawtuneError(f"--lora-modules {name}={folder}: that run was trained on {run.base_model}, not on "
                                   f"{base_path}; adapters share one base model, so serve it from its own server")
            runs[name] = run
        self.dtype = resolve_dtype(self.dtype)  # `auto` becomes what this machine runs fastest (reported in ready)
        model = load_base(base_path, self.dtype)
        if base_chat is None:
            base_chat = open_chat(base_path)
        if runs:
            from peft import PeftModel

            for row, (name, run) in enumerate(runs.items()):
                adapter_name, folder = f"adapter{row}", run.adapter_dir(self.adapter)
                if row == 0:
                    model = PeftModel.from_pretrained(model, folder, adapter_name=adapter_name)
                else:
                    model.load_adapter(folder, adapter_name=adapter_name)
                chat = base_chat if run is main else open_chat(run)
                self._served[name] = _Served(adapter_name, chat, parent=base_id, root=str(folder))
            model.eval()
        if self.serve_base or not runs:
            self._served[base_id] = _Served(BASE_ROW if runs else None, base_chat, root=str(base_path))
        transpose_output_head(model)
        self.model, self.batch = model, DecodeBatch(model)
        self.model_ids = list(self._served)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
        while self._pending:
            self._pending.popleft().post(EngineError("the server is shutting down"))

    # -- reads for the app and metrics ----------------------------------------------------------------
    def prompt(self, model: str, *, messages: list[dict[str, Any]] | None = None, text: str | None = None,
               ids: list[int] | None = None, tools: list[dict[str, Any]] | None = None) -> Prompt:
        chat = self._served[model].chat
        if ids is not None:  # a client's token ids: out of the vocabulary would fail the prefill, a 400 here
            vocab = self.vocab_size()
            bad = [token for token in ids if not 0 <= token < vocab]
            if bad:
                raise ApiError(400, f"prompt names token ids outside the vocabulary (0…{vocab - 1}): {bad[:5]}",
                               param="prompt", code="invalid_value")
        if messages is not None:
            ids = chat.encode_prompt(messages, tools=tools) if tools else chat.encode_prompt(messages)
        elif text is not None:
            ids = chat.tokenizer(text)["input_ids"]  # with the BOS, as vLLM's completions do
        return Prompt(len(ids or []), list(ids or []), messages=messages, text=text, tools=tools)

    def context_length(self, model: str) -> int | None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if self.max_context is not None:
            limit = min(limit or self.max_context, self.max_context)
        return limit

    def model_info(self, model: str) -> dict[str, Any]:
        served = self._served[model]
        info: dict[str, Any] = {"root": served.root, "max_model_len": self.context_length(model)}
        if served.parent:
            info["parent"] = served.parent
        return info

    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight_t.shape[1]) if hasattr(
            self.model.get_output_embeddings(), "weight_t") else int(self.model.config.vocab_size)

    @property
    def active_batch_size(self) -> int:
        return len(self.batch.sequences) if self.batch is not None else 0

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    # -- the async side -------------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        if request.model not in self._served:
            raise EngineError(f"model {request.model!r} is not loaded")
        if request.prompt.ids is None:
            raise EngineError("the local engine needs the prompt's token ids (engine.prompt)")
        vocab = self.vocab_size()
        bad = [token for token in request.logit_bias if not 0 <= token < vocab]
        if bad:
            raise ApiError(400, f"logit_bias names token ids outside the vocabulary (0…{vocab - 1}): {bad[:5]}",
                           param="logit_bias", code="invalid_value")
        lazy = request.tool_rules and request.grammar is None and bool(request.prompt.tools)
        cite = request.cite is not None and request.json_schema is None and request.grammar is None and not lazy
        if (request.json_schema is not None or request.grammar is not None or request.logprobs is not None or lazy
                or cite):
            await asyncio.to_thread(self._llguidance_tokenizer)
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        if lazy:  # per choice: a LazyCall holds its sequence's state (compiling its grammar takes a few ms)
            grammars = [await asyncio.to_thread(self._lazy_calls, request) for _ in range(request.n)]
        elif cite:  # serve --kb: article numbers only from the retrieved articles, per choice
            grammars = [await asyncio.to_thread(self._cite_grammar, request) for _ in range(request.n)]
        else:
            grammars = [self._grammar(request.json_schema, request.grammar) for _ in range(request.n)]
        jobs = [_ChoiceJob(request, index, loop, queue, grammar=grammar) for index, grammar in enumerate(grammars)]
        self._pending.extend(jobs)
        self._wake.set()
        finished = 0
        try:
            while finished < request.n:
                event = await queue.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                finished += isinstance(event, Finished)
        finally:
            for job in jobs:
                job.cancelled = True  # a no-op when finished; frees the slot at the next step otherwise
            self._wake.set()

    def _llguidance_tokenizer(self) -> Any:
        """llguidance's tokenizer (for response_format masks and the bytes of logprob tokens), built once."""
        with self._ll_lock:
            if self._ll_tokenizer is None:
                import llguidance.hf

                chat = next(iter(self._served.values())).chat
                # llguidance wants every token id the tokenizer has; the model's logits may have more rows (padding)
                # or fewer (a GGUF's vocabulary without the tokenizer's added tokens): grammar_mask fits the mask
                n_vocab = max(self.vocab_size(), len(chat.tokenizer))
                self._ll_tokenizer = llguidance.hf.from_tokenizer(chat.tokenizer, n_vocab=n_vocab,
                                                                  eos_token=list(chat.stop_token_ids))
            return self._ll_tokenizer

    def _lazy_calls(self, request: GenerationRequest) -> Any:
        """tool_choice auto: the lazy call grammar under the conversation's rules (lawtune.tools.constrain), the
        same as eval / infer / chat decode with."""
        from lawtune.tools.constrain import LazyCall

        chat = self._served[request.model].chat
        return LazyCall(chat.tokenizer, self._ll_tokenizer, request.prompt.tools, request.prompt.messages,
                        chat.stop_token_ids, figures=self.decoding.tool_figures,
                        result_figure=self.decoding.tool_result_figure,
                        said_required=self.decoding.tool_said_required)

    def _cite_grammar(self, request: GenerationRequest) -> Any:
        """serve --kb: the citation constraint of this request's retrieved articles (lawtune.kb.cite_constrain), the
        same eval / infer / chat decode with (its token table is built once per tokenizer, a second or two)."""
        from lawtune.kb.cite_constrain import CiteGrammar

        cite = request.cite  # one prompt's CiteConstraint
        return CiteGrammar(self._ll_tokenizer, cite.names, cite.materials[0],
                           self._served[request.model].chat.stop_token_ids)

    def _grammar(self, schema: dict[str, Any] | None, lark: str | None = None) -> Any:
        if schema is None and lark is None:
            return None
        import llguidance

        # a Lark grammar comes from tool_choice (lawtune.serving.tool_calls.tool_grammar: its JSON has the
        # same fixed layout); a schema from response_format
        param, what = ("tools", "the tools' parameter schemas") if lark is not None else (
            "response_format", "the JSON schema")
        try:
            # no free whitespace: a small model given the choice pads JSON with newlines until max_tokens
            grammar = (llguidance.LLMatcher.grammar_from_lark(lark) if lark is not None
                       else llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_LAYOUT))
            matcher = llguidance.LLMatcher(self._ll_tokenizer, grammar)
        except (ValueError, TypeError, RuntimeError) as error:
            raise ApiError(400, f"{param}: {what} cannot be used for constrained decoding: {error}",
                           param=param, code="invalid_value") from None
        if matcher.is_error():
            raise ApiError(400, f"{param}: {what} cannot be used for constrained decoding: "
                           f"{matcher.get_error()}", param=param, code="invalid_value")
        return matcher

    # -- the worker thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        torch.set_grad_enabled(False)
        while not self._stopping:
            self._wake.clear()  # before looking at the queue, so a request arriving now wakes the wait below
            self._admit()
            if not self.batch.sequences:
                self._wake.wait(timeout=0.5)
                continue
            self._drop_leaving()
            if self.batch.sequences:
                self._step()
        self._fail_all(EngineError("the server is shutting down"))

    def _admit(self) -> None:
        from lawtune.modeling.decoding import STREAM_HOLD_CHARS, RepetitionWatch, TextStream
        from lawtune.serving.engines.batch import Sequence

        while self._pending and self.active_batch_size < self.max_batch_size:
            job = self._pending.popleft()
            if job.cancelled:
                continue
            if time.monotonic() > job.deadline:
                job.post(EngineTimeout("the request waited past its deadline for a free slot"))
                continue
            served, request = self._served[job.request.model], job.request
            policy = dataclasses.replace(self.decoding, **request.penalties())
            seed = None if request.seed is None else request.seed + job.index
            job.seq = Sequence(request.prompt.ids, temperature=request.temperature, top_p=request.top_p,
                                  seed=seed, decoding=policy if policy.penalizes else None,
                                  stop_ids=frozenset(served.chat.stop_token_ids), top_k=request.top_k,
                                  min_p=request.min_p, logit_bias=request.logit_bias, grammar=job.grammar,
                                  logprobs=request.logprobs, adapter=served.adapter)
            # a forced call or response_format is JSON, never cut as a loop; a lazy call grammar's answer may loop
            watch = policy.repetition_stop and (job.grammar is None or request.tool_rules)
            job.stream = TextStream(served.chat.tokenizer, request.stop, watch=RepetitionWatch() if watch else None,
                                       hold=STREAM_HOLD_CHARS if request.stream else None)
            self._jobs[id(job.seq)] = job
            try:
                token = self.batch.join(job.seq)
            except Exception as error:  # a failing prefill must not take the worker (and every request) down
                log.exception("prefill failed")
                self._jobs.pop(id(job.seq))
                job.post(EngineError(f"generation failed: {error}"))
                self.counts["failed"] += 1
                continue
            self.peak_batch_size = max(self.peak_batch_size, self.active_batch_size)
            self.progress += 1
            if self._consume(job, token):
                self._remove([job.seq])

    def _drop_leaving(self) -> None:
        now = time.monotonic()
        leaving = []
        for seq in self.batch.sequences:
            job = self._jobs[id(seq)]
            if job.cancelled or now > job.deadline:
                self.counts["cancelled" if job.cancelled else "timed_out"] += 1
                if not job.cancelled:
                    job.post(EngineTimeout("generation ran past the request's deadline"))
                leaving.append(seq)
        self._remove(leaving)

    def _step(self) -> None:
        try:
            tokens = self.batch.step()
            self.progress += 1
        except Exception as error:
            log.exception("decode step failed")
            self._fail_all(EngineError(f"generation failed: {error}"))
            return
        finished = [seq for seq, token in zip(list(self.batch.sequences), tokens)
                    if self._consume(self._jobs[id(seq)], token)]
        self._remove(finished)

    def _consume(self, job: _ChoiceJob, token: int) -> bool:
        """Turn one new token into events; True when the sequence is done."""
        seq, stream, request = job.seq, job.stream, job.request
        if token not in seq.stop_ids and seq.last_logprobs is not None:
            job.logprobs.append(self._token_logprob(token, *seq.last_logprobs))
        delta, reason = advance(stream, token, seq.stop_ids)  # "repetition": cut at the last sentence end before the loop
        if delta:
            job.post(TextDelta(delta, job.index, self._take_logprobs(job)))
        if reason is None and len(seq.generated) >= request.max_tokens:
            reason = "length"
        if reason is None:
            return False
        rest = stream.flush()
        if rest:
            job.post(TextDelta(rest, job.index, self._take_logprobs(job)))
        job.post(Finished(reason, Usage(len(seq.prompt_ids), len(seq.generated)), job.index,
                          self._take_logprobs(job)))
        self.counts["finished"] += 1
        return True

    def _take_logprobs(self, job: _ChoiceJob) -> list[TokenLogprob] | None:
        if job.request.logprobs is None:
            return None
        taken, job.logprobs = job.logprobs, []
        return taken

    def _token_logprob(self, token: int, logprob: float, top: list[tuple[int, float]]) -> TokenLogprob:
        def text(token_id: int) -> tuple[str, list[int]]:
            raw = self._ll_tokenizer.decode_bytes([token_id])
            return raw.decode("utf-8", "replace"), list(raw)

        alternatives = [(piece, value, raw) for (piece, raw), value in ((text(t), v) for t, v in top)]
        return TokenLogprob(text(token)[0], logprob, text(token)[1], alternatives)

    def _remove(self, leaving: list[Any]) -> None:
        self.batch.remove(leaving)
        for seq in leaving:
            self._jobs.pop(id(seq), None)

    def _fail_all(self, error: EngineError) -> None:
        for job in self._jobs.values():
            job.post(error)
            self.counts["failed"] += 1
        self._remove(list(self.batch.sequences))
