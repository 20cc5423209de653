"""Read an evaluation file: `conversations` JSONL (what `lawtune prepare` writes) → prompt + reference.

    examples = read_examples("out/test.jsonl", limit=30)
    examples[0].messages    # every turn before the last assistant answer (system/user/assistant)
    examples[0].reference   # the last assistant answer

Each line is `{"conversations": [{"role": ..., "content": ...}, ...], "meta"?: {...}}` and must end with
an assistant turn. A bad line is an error naming the file, the line and the fix: evaluating on a silently
shortened file would give numbers nobody can compare.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lawtune.errors import LawtuneError

ROLES = ("system", "user", "assistant")


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


def _parse_line(path: Path, number: int, line: str) -> Example:
    where = f"{path}:{number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise LawtuneError(f"{where} is not valid JSON ({error.msg}); fix the line or re-run `lawtune prepare`") from error
    turns = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(turns, list) or not turns:
        raise LawtuneError(f"{where} has no non-empty 'conversations' list; convert the file with `lawtune prepare`")
    for turn in turns:
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            raise LawtuneError(
                f"{where}: every turn needs a role in {ROLES} and a string content, got {str(turn)[:80]!r}"
            )
    if turns[-1]["role"] != "assistant" or not any(t["role"] == "user" for t in turns[:-1]):
        raise LawtuneError(f"{where} must end with an assistant answer after a user turn (the reference)")
    messages = [{"role": t["role"], "content": t["content"]} for t in turns[:-1]]
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    return Example(messages, turns[-1]["content"], meta)


def read_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    """The first `limit` examples of a conversations JSONL file (all when `limit` is None)."""
    path = Path(path)
    if not path.is_file():
        raise LawtuneError(f"evaluation file {path} not found; make one with `lawtune prepare SRC -o DIR` (DIR/test.jsonl)")
    examples: list[Example] = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if limit is not None and len(examples) >= limit:
                break
            if line.strip():
                examples.append(_parse_line(path, number, line))
    if not examples:
        raise LawtuneError(f"evaluation file {path} holds no examples")
    return examples
