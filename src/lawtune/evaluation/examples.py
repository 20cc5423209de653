"""Read an evaluation file: `conversations` JSONL (what `lawtune prepare` writes) → prompt + reference.

    examples = read_examples("out/test.jsonl", limit=30)
    examples[0].messages    # every turn before the last assistant answer (system/user/assistant)
    examples[0].reference   # the last assistant answer

Each line is `{"conversations": [{"role": ..., "content": ...}, ...], "meta"?: {...}}` and must end with
an assistant turn. A bad line is an error naming the file, the line and the fix: evaluating on a silently
shortened file would give numbers nobody can compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from lawtune.data.conversations import read_examples as read_conversation_file


@dataclass
class Example:
    messages: list[dict[str, str]]
    reference: str
    meta: dict = field(default_factory=dict)

    @property
    def question(self) -> str:
        """The last user turn: what a reader of the report wants to see."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")

    @property
    def conversation(self) -> list[dict[str, str]]:
        return [*self.messages, {"role": "assistant", "content": self.reference}]


def read_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    """The first `limit` examples of a conversations JSONL file (all when `limit` is None).

    Validation is `lawtune.data.conversations`' (the same rules `lawtune prepare` writes by), so a bad
    line is a LawtuneError naming file:line.
    """
    return [
        Example([{"role": t["role"], "content": t["content"]} for t in turns[:-1]], turns[-1]["content"], meta)
        for turns, meta in islice(read_conversation_file(path), limit)
    ]
