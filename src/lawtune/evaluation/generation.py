"""Batched generation with left padding, greedy by default, with a progress bar.

    settings = GenerationSettings(max_new_tokens=384)            # decoding=DecodingPolicy(): the defaults
    outputs = generate(loaded, [example.prompt for example in examples], settings)
    outputs[0].text, outputs[0].finish_reason, outputs[0].ended, outputs[0].new_tokens

Prompts are sorted by length before batching so a batch pays little padding; results come back in the
caller's order. Padding goes on the left so every row's next token is predicted from its last real
token. Every knob that changes the text is in `GenerationSettings` (repetition control and the repetition
stop in its `decoding` policy, `lawtune.modeling.decoding`), which eval/compare record next to their
metrics, so two models are only ever compared under the same settings.

`finish_reason` is "stop" (the model emitted its end-of-turn token: `ended`), "length" (the budget ran
out) or "repetition" (the answer looped and was cut at the last sentence end before the loop).
"""

from __future__ import annotations

import contextlib

import dataclasses
from dataclasses import asdict
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass  # GenerationSettings: limits checked; Generation below is a plain one

from lawtune.errors import LawtuneError
from lawtune.memory import trim_heap
from lawtune.modeling.decoding import (AnswerLogitsProcessor, DecodingPolicy, RepetitionStopCriteria, RepetitionWatch,
                                       TextStream, advance)


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated; the limits live in the fields (a pydantic dataclass: a bad value is a
    ValidationError naming every bad field; the CLIs name the flags, `lawtune.settings.validate`)."""

    # None: eval / compare pick a budget that fits the references (`evaluate.answer_budget`)
    max_new_tokens: int | None = Field(None, ge=1, description="Answer budget in tokens.")
    # repetition control + repetition stop; deterministic, and the same for every model compared
    decoding: DecodingPolicy = Field(default_factory=DecodingPolicy)
    max_input_length: int = Field(512, ge=1, description="Prompt tokens kept (cut from the left, the latest question survives).")
    batch_size: int = Field(8, ge=1, description="Prompts generated together (left padding).")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding (opt-in).")
    temperature: float = Field(0.8, description="Sampling temperature (with --sample).")
    top_p: float = Field(0.8, description="Nucleus sampling mass (with --sample).")
    seed: int = Field(0, description="Sampling seed (the same seed gives the same answer).")

    @model_validator(mode="after")
    def _sampling_needs_a_distribution(self) -> "GenerationSettings":
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError(f"sampling needs temperature > 0 and 0 < top_p ≤ 1, got {self.temperature}, {self.top_p}")
        return self

    def record(self) -> dict[str, Any]:
        """What changes the generated text (batch size too: padding can shift the last float bit)."""
        data = asdict(self)
        if not self.do_sample:
            for key in ("temperature", "top_p", "seed"):
                data.pop(key)
        return data


FinishReason = Literal["stop", "length", "repetition"]


@dataclasses.dataclass
class Generation:
    text: str
    finish_reason: FinishReason
    new_tokens: int  # tokens generated, the end-of-turn token included (what the answer cost)

    @property
    def ended(self) -> bool:
        """The model emitted its end-of-turn token within the budget: it ended the answer on its own."""
        return self.finish_reason == "stop"


def make_progress():
    """The rich progress bar every long lawtune evaluation step shows."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )


def prompt_ids(chat: Any, messages: list[dict[str, str]], max_input_length: int,
               tools: list[dict[str, Any]] | None = None) -> list[int]:
    """The prompt's token ids (with `tools`: their definitions rendered by the template), cut from the left to
    `max_input_length` (keeping a leading bos)."""
    ids = chat.encode_prompt(messages, tools=tools) if tools else chat.encode_prompt(messages)
    if len(ids) <= max_input_length:
        return ids
    bos = chat.tokenizer.bos_token_id
    keep_bos = bos is not None and ids[0] == bos
    ids = ids[len(ids) - max_input_length:]
    return [bos, *ids[1:]] if keep_bos else ids


def generation_config(loaded: Any, settings: GenerationSettings) -> Any:
    """transformers' GenerationConfig for `settings`; its own repetition knobs stay off (see `decoding_hooks`)."""
    from transformers import GenerationConfig

    if settings.max_new_tokens is None:
        raise LawtuneError("max_new_tokens is not set: give --max-new-tokens (eval and compare pick one that fits the references)")
    tokenizer = loaded.tokenizer
    sampling = {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0} if settings.do_sample else {}
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
        eos_token_id=loaded.chat.stop_token_ids, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, **sampling,
    )


def decoding_hooks(loaded: Any, policy: DecodingPolicy, rows: int, prompt_width: int,
                   tools: list[list[dict[str, Any]] | None] | None = None,
                   conversations: list[list[dict[str, Any]]] | None = None, cite: Any = None) -> dict[str, Any]:
    """`logits_processor` / `stopping_criteria` kwargs for `model.generate` that apply `policy`.

    The prompt occupies columns [0, prompt_width) of every row (left padding), so both hooks look only
    at what comes after it. `tools`: per row, the tool definitions its prompt offers; a row with tools decodes
    each `<tool_call>` block under the grammar of a call of those tools, without the penalties
    (`lawtune.tools.constrain`, tool_choice auto); `conversations`, per row, its messages: the grammar then follows
    the conversation's rules too (no tool called twice, figures copied from the user's words). `cite`
    (`lawtune.kb.cite_constrain.CiteConstraint` of these rows, `--kb`): an article number may only be one of the
    row's retrieved articles (not with tools)."""
    stops = loaded.chat.stop_token_ids
    hooks: dict[str, Any] = {}
    if tools is not None and any(tools):
        from lawtune.tools.constrain import ToolCallLogitsProcessor

        hooks["logits_processor"] = [ToolCallLogitsProcessor(loaded.tokenizer, tools, prompt_width, stops, policy,
                                                             conversations=conversations)]
    elif cite is not None:
        hooks["logits_processor"] = [cite.processor(loaded.tokenizer, prompt_width, stops, policy)]
    elif policy.penalizes:
        hooks["logits_processor"] = [AnswerLogitsProcessor(policy, prompt_width, stops)]
    if policy.repetition_stop:
        hooks["stopping_criteria"] = [RepetitionStopCriteria(loaded.tokenizer, rows, prompt_width, stops)]
    return hooks


def decode_new_tokens(loaded: Any, new_ids: list[int], policy: DecodingPolicy | None = None) -> Generation:
    """One row's generated ids → its answer: cut at the first stop token, or where the repetition stop fired.

    The ids are replayed through the same `TextStream` + `RepetitionWatch` the stopping criterion (and the
    server) ran, so the cut falls where generation stopped; ids after it (padding) are ignored."""
    policy = policy or DecodingPolicy()
    stops = set(loaded.chat.stop_token_ids)
    stream = TextStream(loaded.tokenizer, watch=RepetitionWatch() if policy.repetition_stop else None)
    reason: FinishReason | None = None
    used = 0
    for token in new_ids:
        used += 1
        reason = advance(stream, token, stops)[1]
        if reason is not None:
            break
    return Generation(text=stream.text.rstrip("\ufffd").strip(), finish_reason=reason or "length", new_tokens=used)


TRIM_EVERY_TOKENS = 32  # decoding steps between two heap trims during generation (a trim costs ~1 ms)


class TrimHeapEvery:
    """A stopping criterion that stops nothing: every `tokens` decoding steps it gives the heap's free pages
    back to the OS (`lawtune.memory.trim_heap`).

    transformers' KV cache grows by one `torch.cat` per layer and new token: each step allocates every layer's
    keys and values one token longer and frees the old ones, blocks of a few MiB that glibc keeps and cannot
    reuse for the next, longer ones. In the demo's compare the RSS grew ~50 MiB every 3 s of generation (3.1 →
    5.6 GiB in two minutes, batches of 8 × up to 384 new tokens). Trimming touches no tensor: the text is the same."""

    def __init__(self, tokens: int = TRIM_EVERY_TOKENS):
        self.tokens, self.calls = tokens, 0

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.calls += 1
        if self.calls % self.tokens == 0:
            trim_heap()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def generate(
    loaded: Any, conversations: list[list[dict[str, str]]], settings: GenerationSettings,
    description: str = "generating", show_progress: bool = True, tools: list[list[dict[str, Any]] | None] | None = None,
    cite: Any = None,
) -> list[Generation]:
    """Answer every conversation (each ends with a user or tool turn); outputs in input order.

    `tools`: per conversation, the OpenAI tool definitions offered with it (lawtune.evaluation.tool_eval).
    `cite`: `lawtune.kb.cite_constrain.CiteConstraint` over the conversations (their retrieved articles)."""
    import time

    import torch

    model, pad_id = loaded.model, loaded.tokenizer.pad_token_id
    offered = tools or [None] * len(conversations)
    encoded = [prompt_ids(loaded.chat, messages, settings.max_input_length, tools=defs)
               for messages, defs in zip(conversations, offered)]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    config = generation_config(loaded, settings)
    results: list[Generation | None] = [None] * len(encoded)
    progress = make_progress()
    task = progress.add_task(description, total=len(encoded), rate="")
    started, produced = time.perf_counter(), 0
    with progress if show_progress else contextlib.nullcontext():
        for first in range(0, len(order), settings.batch_size):
            batch = order[first:first + settings.batch_size]
            width = max(len(encoded[i]) for i in batch)
            # left padding: [pad … pad, prompt]; the mask hides the pads from attention
            input_ids = torch.tensor([[pad_id] * (width - len(encoded[i])) + encoded[i] for i in batch], device=model.device)
            attention = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch],
                                     device=model.device)  # a model being trained may sit on a GPU
            if settings.do_sample:
                torch.manual_seed(settings.seed + first)
            hooks = decoding_hooks(loaded, settings.decoding, len(batch), width,
                                   tools=[offered[i] for i in batch] if tools else None,
                                   conversations=[conversations[i] for i in batch] if tools else None,
                                   cite=cite.rows(batch) if cite is not None else None)
            hooks["stopping_criteria"] = [*hooks.get("stopping_criteria", []), TrimHeapEvery()]
            with torch.inference_mode():
                output = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config,
                                        **hooks)
            for row, index in enumerate(batch):
                results[index] = decode_new_tokens(loaded, output[row, width:].tolist(), settings.decoding)
                produced += results[index].new_tokens
            rate = produced / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=len(batch), rate=f"{rate:.1f} tok/s")
            trim_heap()  # the batch's KV cache is gone: its pages too
    return [r for r in results if r is not None]

