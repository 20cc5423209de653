"""The `conversations` JSONL format that prepare writes and train/eval read, and its validation.

    from lawtune.data.conversations import read_conversations
    for messages in read_conversations("out/test.jsonl"):   # LawtuneError names file:line of a bad line
        question, answer = messages[-2]["content"], messages[-1]["content"]

One JSON object per line: {"conversations": [{"role": "system", ...}?, {"role": "user", "content": ...},
{"role": "assistant", "content": ...}, ...], "meta": {...}?}. This is ChatGLM3's fine-tuning format; extra
keys such as "meta" sit beside "conversations" and are ignored by ChatGLM3's loader.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lawtune.errors import LawtuneError

ROLES = ("system", "user", "assistant")
EXAMPLE_LINE = '{"conversations": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'


def check_messages(messages: Any) -> str | None:
    """None when `messages` is a valid conversation, else what is wrong (one short phrase).

    Valid: an optional system turn first, then user and assistant turns alternating, starting with the
    user and ending with the assistant; every turn is {"role": ..., "content": str}.
    """
    if not isinstance(messages, list) or not messages:
        return "'conversations' must be a non-empty list of turns"
    expected = "user"
    for index, turn in enumerate(messages):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            return f"turn {index} must be an object with a string 'content'"
        role = turn.get("role")
        if role not in ROLES:
            return f"turn {index} has role {role!r}; roles must be one of {', '.join(ROLES)}"
        if role == "system" and index == 0:
            continue
        if role != expected:
            return f"turn {index} has role {role!r} where {expected!r} was expected (user/assistant must alternate)"
        expected = "assistant" if role == "user" else "user"
    if expected != "user":
        return "the last turn must be the assistant's answer"
    if messages[-1].get("role") != "assistant":
        return "a conversation needs a user turn and the assistant's answer"
    return None


def read_examples(path: str | Path) -> Iterator[tuple[list[dict[str, str]], dict[str, Any]]]:
    """Yield (messages, meta) for each line of a conversations JSONL file; raise on the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise LawtuneError(f"{path}: no such file; give a conversations JSONL file (e.g. out/test.jsonl from lawtune prepare)")
    count = 0
    with open(path, encoding="utf-8-sig") as handle:
        lines = _checked_lines(path, handle)
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise LawtuneError(f"{path}:{line_no}: not valid JSON ({error.msg}); each line must look like {EXAMPLE_LINE}") from None
            messages = record.get("conversations") if isinstance(record, dict) else None
            problem = check_messages(messages) if messages is not None else "no 'conversations' key"
            if problem:
                raise LawtuneError(f"{path}:{line_no}: {problem}; each line must look like {EXAMPLE_LINE}")
            meta = record.get("meta")
            count += 1
            yield messages, meta if isinstance(meta, dict) else {}
    if count == 0:
        raise LawtuneError(f"{path}: no conversations in the file; run lawtune prepare to make one")


def _checked_lines(path: Path, handle: Any) -> Iterator[str]:
    try:
        yield from handle
    except UnicodeDecodeError as error:
        raise LawtuneError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start} of a block); write it as UTF-8 JSONL") from None


def read_conversations(path: str | Path) -> Iterator[list[dict[str, str]]]:
    """Yield the turns of each line of a conversations JSONL file; LawtuneError names file:line of a bad one."""
    for messages, _meta in read_examples(path):
        yield messages
