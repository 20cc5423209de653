"""Training data: conversations JSONL → token ids + labels, and the batch collator.

    rows = read_conversations(Path("out/legal_qa/train.jsonl"))       # [[{"role", "content"}, ...], ...]
    encoded = encode_rows(rows, chat, max_input_length=256, max_output_length=256)
    encoded.examples[0] == {"input_ids": [...], "labels": [...]}; encoded.dropped == {"no assistant turn": 3}; encoded.changed
    batch = Collator(pad_token_id=0)(encoded.examples[:4])            # padded to the longest in the batch

Input lines are ChatGLM3's format, `{"conversations": [{"role": "user", "content": ...}, ...]}`; a bare list
of messages or an alpaca-style `{"instruction", "input", "output"}` row is accepted too. A line that is not
valid JSON or has no usable conversation is a LawtuneError naming the file and line.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lawtune.errors import LawtuneError
from lawtune.modeling.chat import DROP_EMPTY_ANSWER, IGNORE_INDEX, ChatFormat

ROLES = {"system", "user", "assistant"}


def read_conversations(path: Path) -> list[list[dict[str, str]]]:
    path = Path(path)
    if not path.is_file():
        raise LawtuneError(f"data file {path} not found; create it with `lawtune prepare SRC -o DIR`")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise LawtuneError(f"{path} line {number} is not valid JSON ({error.msg}); fix or remove that line") from error
            rows.append(_messages(record, path, number))
    if not rows:
        raise LawtuneError(f"{path} holds no conversations; check the file or re-run `lawtune prepare`")
    return rows


def _messages(record: Any, path: Path, number: int) -> list[dict[str, str]]:
    if isinstance(record, dict) and "conversations" in record:
        messages = record["conversations"]
    elif isinstance(record, dict) and "instruction" in record:
        question = "\n".join(part for part in (record.get("instruction"), record.get("input")) if part)
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": record.get("output", "")}]
    else:
        messages = record
    ok = isinstance(messages, list) and messages and all(
        isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages
    )
    if not ok:
        raise LawtuneError(
            f"{path} line {number} is not a conversation: expected "
            '{"conversations": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}'
        )
    return [{"role": m["role"], "content": m["content"]} for m in messages]


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
    rows: list[list[dict[str, str]]], chat: ChatFormat, max_input_length: int, max_output_length: int
) -> EncodedData:
    """Encode every conversation; what is dropped or changed is counted by reason, never silent.

    Every kept example teaches the stop: its supervised tokens end with the end-of-turn marker (checked
    here, not assumed), and an over-long answer is cut at a sentence end or dropped (`ChatFormat.encode_checked`).
    """
    data = EncodedData([])
    end = chat.end_of_turn_ids
    for messages in rows:
        encoding = chat.encode_checked(messages, max_input_length, max_output_length)
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
