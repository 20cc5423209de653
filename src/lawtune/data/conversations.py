"""The `conversations` JSONL format that prepare writes and train/eval read: the one reader and example type.

    from lawtune.data.conversations import read_examples
    for example in read_examples("out/test.jsonl"):   # LawtuneError names file:line of a bad line
        example.messages    # every turn: optional system, then user/assistant alternating, the assistant last
        example.prompt      # the turns before the last assistant answer (what eval asks the model)
        example.reference   # the last assistant answer (what eval scores against)
        example.meta        # the line's "meta" object ({} when absent)
    rows = [e.messages for e in read_examples("out/train.jsonl", strict=False)]   # what `lawtune train` reads

One JSON object per line: {"conversations": [{"role": "system", ...}?, {"role": "user", "content": ...},
{"role": "assistant", "content": ...}, ...], "meta": {...}?, "tools": [...]?}. This is ChatGLM3's fine-tuning
format; extra keys such as "meta" sit beside "conversations" and are ignored by ChatGLM3's loader.
`Example.record()` is the line `lawtune prepare` writes.

Tool use (docs/tools.md): `tools` is a list of OpenAI tool definitions; an assistant turn may carry OpenAI
`tool_calls` (its content may then be empty) and must then be followed by `{"role": "tool", "tool_call_id",
"name", "content"}` turns, one per call, before the next assistant turn.

`strict=False` is what training reads: a line may also be a bare list of turns or an alpaca-style
{"instruction", "input", "output"} row, and the order of the turns is not checked here (the training encoder
drops and counts a conversation it cannot use, `lawtune.training.data.encode_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from lawtune.errors import LawtuneError

ROLES = ("system", "user", "assistant", "tool")
TOOL_KEYS = ("tool_calls", "tool_call_id", "name")  # kept on a turn beside role and content
EXAMPLE_LINE = '{"conversations": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'


@dataclass
class Example:
    """One conversation: its turns ({"role", "content"}), the line's meta, and where it came from."""

    messages: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    line: int = 0  # line (record) number in the source file; 0 when not read from a file
    tools: list[dict[str, Any]] | None = None  # OpenAI tool definitions the conversation may call

    @property
    def _answer(self) -> int | None:
        return next((i for i in range(len(self.messages) - 1, -1, -1) if self.messages[i]["role"] == "assistant"), None)

    @property
    def prompt(self) -> list[dict[str, str]]:
        """Every turn before the last assistant answer (all turns when there is none)."""
        answer = self._answer
        return self.messages if answer is None else self.messages[:answer]

    @property
    def reference(self) -> str:
        """The last assistant answer ("" when there is none)."""
        answer = self._answer
        return "" if answer is None else self.messages[answer]["content"]

    @property
    def question(self) -> str:
        """The last user turn of the prompt: what a reader of a report wants to see."""
        return next((m["content"] for m in reversed(self.prompt) if m["role"] == "user"), "")

    def record(self) -> dict[str, Any]:
        """The JSON object of one line of a conversations file."""
        record: dict[str, Any] = {"conversations": self.messages, "meta": self.meta}
        if self.tools:
            record["tools"] = self.tools
        return record


def check_messages(messages: Any, *, order: bool = True) -> str | None:
    """None when `messages` is a valid conversation, else what is wrong (one short phrase).

    Valid: an optional system turn first, then user and assistant turns alternating, starting with the
    user and ending with the assistant; every turn is {"role": ..., "content": str}. An assistant turn with
    `tool_calls` is followed by one `tool` turn per call, then the assistant again. With `order=False` only
    the turns' shape is checked.
    """
    if not isinstance(messages, list) or not messages:
        return "'conversations' must be a non-empty list of turns"
    expected = "user"
    pending = 0  # tool results still owed to the last assistant's calls
    for index, turn in enumerate(messages):
        problem = _turn_problem(index, turn)
        if problem:
            return problem
        role = turn["role"]
        if not order or (role == "system" and index == 0):
            continue
        if pending and role != "tool":
            return f"turn {index} has role {role!r} where a 'tool' result was expected ({pending} call(s) unanswered)"
        if role == "tool":
            if not pending:
                return f"turn {index} is a 'tool' result with no assistant tool call before it"
            pending -= 1
            expected = "assistant"
            continue
        if role != expected:
            return f"turn {index} has role {role!r} where {expected!r} was expected (user/assistant must alternate)"
        pending = len(turn.get("tool_calls") or [])
        expected = "assistant" if role == "user" else "user"
    if not order:
        return None
    if pending:
        return "the conversation ends with tool calls that have no 'tool' result"
    if expected != "user":
        return "the last turn must be the assistant's answer"
    if messages[-1].get("role") != "assistant":
        return "a conversation needs a user turn and the assistant's answer"
    return None


def _turn_problem(index: int, turn: Any) -> str | None:
    if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
        return f"turn {index} must be an object with a string 'content'"
    role = turn.get("role")
    if role not in ROLES:
        return f"turn {index} has role {role!r}; roles must be one of {', '.join(ROLES)}"
    calls = turn.get("tool_calls")
    if calls is not None:
        from lawtune.modeling.tool_format import call_name_and_arguments

        if role != "assistant" or not isinstance(calls, list) or not calls:
            return f"turn {index}: 'tool_calls' must be a non-empty list on an assistant turn"
        for call in calls:
            try:
                call_name_and_arguments(call)
            except ValueError as error:
                return f"turn {index}: {error}"
    if role == "tool" and not (isinstance(turn.get("name"), str) and turn["name"]):
        return f"turn {index}: a 'tool' result needs the 'name' of the tool"
    return None


def check_tools(tools: Any) -> str | None:
    """None when `tools` is absent or a list of OpenAI tool definitions, else what is wrong."""
    if tools is None:
        return None
    if not isinstance(tools, list) or not all(
            isinstance(tool, dict) and isinstance(tool.get("function"), dict)
            and isinstance(tool["function"].get("name"), str) for tool in tools):
        return "'tools' must be a list of OpenAI tool definitions {\"type\": \"function\", \"function\": {\"name\", ...}}"
    return None


def _kept_keys(turn: dict[str, Any]) -> dict[str, Any]:
    return {"role": turn["role"], "content": turn["content"], **{key: turn[key] for key in TOOL_KEYS if key in turn}}


def read_examples(path: str | Path, limit: int | None = None, *, strict: bool = True) -> Iterator[Example]:
    """The first `limit` examples (all when None) of a conversations JSONL file; raise on the first bad line.

    `strict=False`: the training reader (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise LawtuneError(f"{path}: no such file; give a conversations JSONL file (`lawtune prepare SRC -o DIR` writes "
                           "train/dev/test.jsonl)")
    count = 0
    with open(path, encoding="utf-8-sig") as handle:
        numbered = ((number, line) for number, line in enumerate(_checked_lines(path, handle), 1) if line.strip())
        for line_no, line in islice(numbered, limit):
            try:
                record = json.loads(line)
            except RecursionError:
                raise LawtuneError(f"{path}:{line_no}: nested too deeply to be a conversation; each line must look "
                                   f"like {EXAMPLE_LINE}") from None
            except json.JSONDecodeError as error:
                raise LawtuneError(f"{path}:{line_no}: not valid JSON ({error.msg}); each line must look like {EXAMPLE_LINE}") from None
            messages = _turns(record, strict)
            problem = check_messages(messages, order=strict) if messages is not None else "no 'conversations' key"
            tools = record.get("tools") if isinstance(record, dict) else None
            problem = problem or check_tools(tools)
            if problem:
                raise LawtuneError(f"{path}:{line_no}: {problem}; each line must look like {EXAMPLE_LINE}")
            meta = record.get("meta") if isinstance(record, dict) else None
            count += 1
            yield Example([_kept_keys(t) for t in messages], meta if isinstance(meta, dict) else {}, line_no,
                          tools or None)
    if count == 0 and limit != 0:
        raise LawtuneError(f"{path}: no conversations in the file; run lawtune prepare to make one")


def _turns(record: Any, strict: bool) -> Any:
    """The turns of one parsed line; None when it has none. Not strict: also a bare list or an alpaca row."""
    if isinstance(record, dict) and "conversations" in record:
        return record["conversations"]
    if strict:
        return None
    if isinstance(record, dict) and "instruction" in record:
        question = "\n".join(part for part in (record.get("instruction"), record.get("input")) if part)
        return [{"role": "user", "content": question}, {"role": "assistant", "content": record.get("output", "")}]
    return record if isinstance(record, list) else None


def _checked_lines(path: Path, handle: Any) -> Iterator[str]:
    try:
        yield from handle
    except UnicodeDecodeError as error:
        raise LawtuneError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start} of a block); write it as UTF-8 JSONL") from None
