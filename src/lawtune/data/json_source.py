"""Read JSON sources for `lawtune prepare`: alpaca, query/response, sharegpt and conversations.

    from lawtune.data.json_source import read_json_source
    for item in read_json_source(path, handle, "alpaca", policy): ...   # Kept or Drop per record

A file is either a JSON array (streamed element by element, never loaded whole) or JSONL (one object per
line). A broken JSONL line is a counted `bad_json` drop; a broken JSON array cannot be resynchronised, so
it is an error naming the file and line. Record shapes:
- alpaca: {"instruction", "input", "output", "system"?, "history"?: [[q, a], ...]}; also wrapped in a
  one-element list, as in Lawyer LLaMA's legal_advice.json.
- query_response: {"query", "response", "laws"?: [str], "history"?}; `laws` is kept in "meta". Lawyer
  LLaMA's multi-turn file has no response and a "history" of "[客户] ..." / "[律师] ..." strings, which is
  read as the whole dialogue.
- sharegpt: {"conversations" | "messages": [{"from": "human"|"gpt"|"system", "value"}], "system"?}; tool use as
  LLaMA-Factory writes it: "function_call" / "observation" turns and a "tools" list (or its JSON text).
- conversations: {"conversations": [{"role", "content"}], "meta"?} — validated and passed through; tool use
  as ChatGLM3's finetune_demo ({"role": "tool", "name", "parameters", "observation"} and "tools") or as
  OpenAI messages (`tool_calls`, "tool" turns) is mapped to OpenAI messages (tool_turns.py, docs/tools.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lawtune.data.conversations import check_messages
from lawtune.data.policy import PreparePolicy
from lawtune.data.records import Drop, Kept, finish
from lawtune.data.tool_turns import ToolTurns, has_tool_turns, openai_tool_turns, sharegpt_call, tool_definitions_of
from lawtune.errors import LawtuneError

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                   "system": "system"}
_LAWYER_TAGS = {"[客户]": "user", "[律师]": "assistant"}


def read_json_source(path: Path, handle: IO[str], fmt: str, policy: PreparePolicy) -> Iterator[Kept | Drop]:
    """One Kept or Drop per record of a JSON array or JSONL file, in file order."""
    to_messages = {"alpaca": _alpaca, "query_response": _query_response, "sharegpt": _sharegpt,
                   "conversations": _conversations}[fmt]
    for line, record in iter_json_records(path, handle):
        if record is None:
            yield Drop("bad_json", line)
            continue
        mapped = to_messages(record[0] if _is_wrapped(record) else record)
        if isinstance(mapped, str):
            yield Drop(mapped, line)
            continue
        messages, meta, *tools = mapped  # conversations and sharegpt records may carry tool definitions
        meta = {"source": path.name, "line": line, **meta}
        yield finish(messages, "", line, meta, clean=policy.clean, system_prompt=policy.system_prompt,
                     tools=tools[0] if tools else None)


def iter_json_records(path: Path, handle: IO[str]) -> Iterator[tuple[int, Any]]:
    """(line, value) per array element or JSONL line; value None for a JSONL line that is not JSON."""
    first = _first_char(handle)
    if first == "[":
        yield from _ArrayStream(path, handle).elements()
        return
    if first != "{":
        shown = repr(first) if first else "an empty file"
        raise LawtuneError(f"{path}: not JSON or JSONL (starts with {shown}); expected a JSON array or one JSON object per line, or pass --format csv")
    for line_no, line in enumerate(handle, 1):
        if line.strip():
            try:
                yield line_no, json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # nested past Python's recursion limit: not data either
                yield line_no, None


def classify(record: Any) -> str | None:
    """The format a single record looks like, or None."""
    if _is_wrapped(record):
        record = record[0]
    if not isinstance(record, dict):
        return None
    turns = record.get("conversations", record.get("messages"))
    if isinstance(turns, list) and turns and isinstance(turns[0], dict):
        if "from" in turns[0] and "value" in turns[0]:
            return "sharegpt"
        if "role" in turns[0] and "content" in turns[0]:
            return "conversations"
    if "query" in record and ("response" in record or "history" in record):
        return "query_response"
    if "output" in record and ("instruction" in record or "input" in record):
        return "alpaca"
    return None


# ---- record shapes -> (messages, meta) or a drop reason


def _alpaca(record: Any) -> tuple[list[dict[str, str]], dict[str, Any]] | str:
    if not isinstance(record, dict):
        return "bad_record"
    instruction, extra, output = record.get("instruction", ""), record.get("input", ""), record.get("output")
    if not all(isinstance(value, str) for value in (instruction, extra, output)):
        return "bad_record"
    question = f"{instruction}\n{extra}" if instruction.strip() and extra.strip() else instruction or extra
    history = _pairs(record.get("history"))
    if history is None:
        return "bad_record"
    messages = _system(record) + history + [_turn("user", question), _turn("assistant", output)]
    return messages, {}


def _query_response(record: Any) -> tuple[list[dict[str, str]], dict[str, Any]] | str:
    if not isinstance(record, dict) or not isinstance(record.get("query"), str):
        return "bad_record"
    laws = record.get("laws", [])
    if not isinstance(laws, list) or not all(isinstance(law, str) for law in laws):
        return "bad_record"
    meta = {"laws": laws} if laws else {}
    history = record.get("history") or []
    if history and all(isinstance(item, str) for item in history):
        messages = _tagged_dialogue(history)  # Lawyer LLaMA multi-turn: the history is the whole dialogue
        return (messages, meta) if messages else "bad_record"
    pairs = _pairs(history)
    if pairs is None or not isinstance(record.get("response"), str):
        return "bad_record"
    return _system(record) + pairs + [_turn("user", record["query"]), _turn("assistant", record["response"])], meta


def _sharegpt(record: Any) -> tuple[list[dict[str, Any]], dict[str, Any], list | None] | str:
    turns = record.get("conversations", record.get("messages")) if isinstance(record, dict) else None
    tools = tool_definitions_of(record.get("tools")) if isinstance(record, dict) else None
    if not isinstance(turns, list) or isinstance(tools, str):
        return "bad_record"
    built = ToolTurns(_system(record))
    for turn in turns:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return "bad_record"
        source = turn.get("from")
        if source == "function_call":
            problem = sharegpt_call(turn["value"], built)
        elif source == "observation":
            problem = built.result(turn["value"])
        elif source in _SHAREGPT_ROLES:
            built.messages.append(_turn(_SHAREGPT_ROLES[source], turn["value"]))
            problem = None
        else:
            return "bad_record"
        if problem:
            return "bad_record"
    messages = built.messages
    return (messages, {}, tools) if not built.open_calls and check_messages(messages) is None else "bad_record"


def _conversations(record: Any) -> tuple[list[dict[str, Any]], dict[str, Any], list | None] | str:
    turns = record.get("conversations", record.get("messages")) if isinstance(record, dict) else None
    tools = tool_definitions_of(record.get("tools")) if isinstance(record, dict) else None
    if not isinstance(turns, list) or isinstance(tools, str):
        return "bad_record"
    if has_tool_turns(turns):
        turns = openai_tool_turns(turns)
        if isinstance(turns, str):
            return "bad_record"
    if check_messages(turns) is not None:
        return "bad_record"
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    messages = [{**_turn(turn["role"], turn["content"]),
                 **{key: turn[key] for key in ("tool_calls", "tool_call_id", "name") if key in turn}}
                for turn in turns]
    return messages, dict(meta), tools


def _tagged_dialogue(history: list[str]) -> list[dict[str, str]] | None:
    """"[客户] ..." / "[律师] ..." strings -> turns; repeated speakers merged, a trailing question dropped."""
    messages: list[dict[str, str]] = []
    for item in history:
        tag = item[:4]
        role = _LAWYER_TAGS.get(tag)
        if role is None:
            return None
        text = item[4:].strip()
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + text
        else:
            messages.append(_turn(role, text))
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()  # an unanswered last question teaches nothing
    return messages if check_messages(messages) is None else None


def _pairs(history: Any) -> list[dict[str, str]] | None:
    """alpaca/ChatGLM history [[question, answer], ...] -> turns; None when malformed."""
    if history is None:
        return []
    if not isinstance(history, list):
        return None
    messages = []
    for pair in history:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(text, str) for text in pair)):
            return None
        messages += [_turn("user", pair[0]), _turn("assistant", pair[1])]
    return messages


def _system(record: dict[str, Any]) -> list[dict[str, str]]:
    system = record.get("system")
    return [_turn("system", system)] if isinstance(system, str) and system.strip() else []


def _turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _is_wrapped(record: Any) -> bool:
    return isinstance(record, list) and len(record) == 1 and isinstance(record[0], dict)


def _first_char(handle: IO[str]) -> str:
    """The first non-whitespace character; the handle is rewound to the start."""
    while chunk := handle.read(4096):
        stripped = chunk.lstrip()
        if stripped:
            handle.seek(0)
            return stripped[0]
    handle.seek(0)
    return ""


class _ArrayStream:
    """Elements of a top-level JSON array, decoded one at a time from a growing text buffer."""

    def __init__(self, path: Path, handle: IO[str], chunk: int = 1 << 20) -> None:
        self.path, self.handle, self.chunk = path, handle, chunk
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False
        self.decoder = json.JSONDecoder()

    def elements(self) -> Iterator[tuple[int, Any]]:
        self._skip_ws()
        self._advance(1)  # the "[" (checked by the caller)
        first = True
        while True:
            self._skip_ws()
            char = self._peek()
            if char == "]":
                return
            if not first:
                if char != ",":
                    self._fail(f"expected ',' or ']' but found {char!r}" if char else "the array is not closed with ']'")
                self._advance(1)
                self._skip_ws()
            first = False
            line = self.line
            value, end = self._decode()
            self._advance(end - self.pos)
            yield line, value

    def _decode(self) -> tuple[Any, int]:
        chunk = self.chunk
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:  # a number cut at the buffer end must not pass
                    return value, end
            except json.JSONDecodeError as error:
                if self.eof:
                    self.line += self.buf.count("\n", self.pos, error.pos)
                    self._fail(error.msg)
            except RecursionError:
                self._fail("an element is nested too deeply (over Python's recursion limit)")
            self._read(chunk)
            chunk *= 2  # one huge element costs O(n log n), not O(n^2)

    def _peek(self) -> str:
        if self.pos >= len(self.buf):
            self._read(self.chunk)
        return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def _skip_ws(self) -> None:
        while (char := self._peek()) and char in " \t\r\n":
            self._advance(1)
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self._advance(1)

    def _advance(self, count: int) -> None:
        self.line += self.buf.count("\n", self.pos, self.pos + count)
        self.pos += count

    def _read(self, size: int) -> None:
        data = self.handle.read(size)
        self.buf = self.buf[self.pos:] + data
        self.pos = 0
        self.eof = not data

    def _fail(self, message: str) -> None:
        raise LawtuneError(f"{self.path}:{self.line}: invalid JSON array ({message}); fix the file or write one JSON object per line (JSONL)")
