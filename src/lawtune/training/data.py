"""Training data: conversations → token ids + labels, and the batch collator.

    examples = list(read_examples("out/legal_qa/train.jsonl", strict=False))   # lawtune.data.conversations
    encoded = encode_rows([e.messages for e in examples], chat, max_input_length=256, max_output_length=256,
                          tools=[e.tools for e in examples])               # a record's `tools` go into its prompt
    encoded.examples[0] == {"input_ids": [...], "labels": [...]}; encoded.dropped == {"no assistant turn": 3}; encoded.changed
    batch = Collator(pad_token_id=0)(encoded.examples[:4])            # padded to the longest in the batch

The file is read by the one conversations reader, not strictly: ChatGLM3's `{"conversations": [...]}`
lines, a bare list of messages or an alpaca-style `{"instruction", "input", "output"}` row; a line that is not
valid JSON or has no usable conversation is a LawtuneError naming the file and line. A conversation whose
turns cannot be trained on is dropped here and counted by reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lawtune.errors import LawtuneError
from lawtune.modeling.chat import DROP_EMPTY_ANSWER, IGNORE_INDEX, ChatFormat


@dataclass
class EncodedData:
    examples: list[dict[str, list[int]]]
    dropped: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)  # kept, but altered (e.g. an answer cut at a sentence end)

    @property
    def supervised_tokens(self) -> int:
        return sum(sum(1 for label in ex["labels"][1:] if label != IGNORE_INDEX) for ex in self.examples)

    @property
    def total_tokens(self) -> int:
        return sum(len(ex["input_ids"]) for ex in self.examples)


NOT_ENDING_WITH_STOP = "supervised tokens do not end with the end-of-turn marker"


def encode_rows(
    rows: list[list[dict[str, Any]]], chat: ChatFormat, max_input_length: int, max_output_length: int,
    tools: list[list[dict[str, Any]] | None] | None = None,
) -> EncodedData:
    """Encode every conversation; what is dropped or changed is counted by reason, never silent.

    Every kept example teaches the stop: its supervised tokens end with the end-of-turn marker (checked
    here, not assumed), and an over-long answer is cut at a sentence end or dropped (`ChatFormat.encode_checked`).
    """
    data = EncodedData([])
    end = chat.end_of_turn_ids
    for index, messages in enumerate(rows):
        row_tools = tools[index] if tools else None  # the record's OpenAI tool definitions (docs/tools.md)
        encoding = chat.encode_checked(messages, max_input_length, max_output_length, tools=row_tools)
        example = encoding.example
        if example is None or example.supervised_tokens == 0:
            data.dropped[encoding.note or DROP_EMPTY_ANSWER] += 1
            continue
        supervised = [label for label in example.labels if label != IGNORE_INDEX]
        if supervised[-len(end):] != end:
            data.dropped[NOT_ENDING_WITH_STOP] += 1
            continue
        if encoding.note:
            data.changed[encoding.note] += 1
        data.examples.append({"input_ids": example.input_ids, "labels": example.labels})
    return data


def safe_pad_id(tokenizer: Any, stop_token_ids: list[int]) -> int:
    """A pad id that is not a stop token: padding must never look like the end of an answer.

    Many tokenizers set pad = eos; padded positions carry no loss here, but a generation batch padded with
    the stop token, or a downstream tool that masks pads out of the labels, would unteach the stop.
    """
    for candidate in (tokenizer.pad_token_id, tokenizer.unk_token_id):
        if candidate is not None and candidate not in stop_token_ids:
            return candidate
    raise LawtuneError(
        f"the tokenizer's pad token ({tokenizer.pad_token!r}) is a stop token and it has no other usable "
        "token to pad with; add a pad token to the tokenizer (tokenizer.add_special_tokens({'pad_token': '<pad>'}))"
    )


class Collator:
    """Pad a list of examples to the longest one (right padding; labels padded with -100)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        longest = max(len(ex["input_ids"]) for ex in examples)
        input_ids = torch.full((len(examples), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
        for row, ex in enumerate(examples):
            n = len(ex["input_ids"])
            input_ids[row, :n] = torch.tensor(ex["input_ids"])
            labels[row, :n] = torch.tensor(ex["labels"])
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
