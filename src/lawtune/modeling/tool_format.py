"""The text form of tool calls inside a model's turn (Hermes / Qwen-2.5 style; docs/tools.md).

    from lawtune.modeling.tool_format import render_tool_calls, parse_tool_calls
    text = render_tool_calls([{"function": {"name": "severance_pay", "arguments": '{"monthly_wage": 8000}'}}])
    turn = parse_tool_calls(model_output)   # ParsedTurn(content, calls, errors)

Gemma has no tool tokens, so a call is plain text the tokenizer already knows:

    <tool_call>
    {"name": "severance_pay", "arguments": {"monthly_wage": 8000, "years": 3, "months": 5}}
    </tool_call>

Several blocks are parallel calls; text before the first block is the assistant's `content`. The parser reads
the JSON with `raw_decode` from just after `<tool_call>` (so a `</tool_call>` inside an argument string cannot
cut a call short) and gives one readable error per block that does not parse, never an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"

_DECODER = json.JSONDecoder()


@dataclass
class ParsedCall:
    name: str
    arguments: dict[str, Any]

    def openai(self, index: int = 0) -> dict[str, Any]:
        """The OpenAI `tool_calls` entry for this call (`id` = call_<index>)."""
        return {"id": f"call_{index}", "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}


@dataclass
class ParsedTurn:
    content: str  # the text before the first call block (the whole text when there is none)
    calls: list[ParsedCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one per block that does not parse


def call_name_and_arguments(call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name, arguments dict) of an OpenAI tool call (`{"function": {...}}`) or a bare `{"name", "arguments"}`.

    Arguments may be a dict or a JSON string (as OpenAI sends them); ValueError names what is wrong.
    """
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise ValueError(f"a tool call needs a function name: got {call!r}")
    arguments = function.get("arguments", {})
    if arguments is None or arguments == "":
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as error:
            raise ValueError(f"the arguments of {function['name']} are not valid JSON ({error.msg} at "
                             f"character {error.pos}): {arguments[:200]!r}") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"the arguments of {function['name']} must be a JSON object, got {type(arguments).__name__}")
    return function["name"], arguments


def render_tool_call(name: str, arguments: dict[str, Any]) -> str:
    payload = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}\n{payload}\n{TOOL_CALL_CLOSE}"


def render_tool_calls(calls: list[dict[str, Any]]) -> str:
    """The assistant text for a list of OpenAI tool calls: one block per call, separated by a line break."""
    return "\n".join(render_tool_call(*call_name_and_arguments(call)) for call in calls)


def render_assistant_turn(content: str | None, calls: list[dict[str, Any]]) -> str:
    """Content, then the call blocks on the next line (what the chat templates emit for a call turn)."""
    blocks = render_tool_calls(calls)
    text = (content or "").strip()
    return f"{text}\n{blocks}" if text and blocks else text or blocks


def render_tool_response(name: str, content: Any) -> str:
    """One `<tool_response>` block; `content` is the tool's JSON result (a JSON string is embedded as JSON)."""
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError:
            pass  # a plain-text result stays a JSON string
    payload = json.dumps({"name": name, "content": content}, ensure_ascii=False)
    return f"{TOOL_RESPONSE_OPEN}\n{payload}\n{TOOL_RESPONSE_CLOSE}"


def parse_tool_calls(text: str) -> ParsedTurn:
    """Split a model's turn into its content and its `<tool_call>` blocks (see the module docstring)."""
    start = text.find(TOOL_CALL_OPEN)
    if start < 0:
        return ParsedTurn(content=text.strip())
    turn = ParsedTurn(content=text[:start].strip())
    number = 0
    while start >= 0:
        number += 1
        body = start + len(TOOL_CALL_OPEN)
        next_open = text.find(TOOL_CALL_OPEN, body)
        call, error, end = _parse_block(text, body, number)
        if error:
            turn.errors.append(error)
            # resynchronise at the next block (after this block's close tag when it has one)
            close = text.find(TOOL_CALL_CLOSE, body)
            end = close + len(TOOL_CALL_CLOSE) if close >= 0 and (next_open < 0 or close < next_open) else body
        else:
            turn.calls.append(call)
        start = text.find(TOOL_CALL_OPEN, end)
    return turn


def _parse_block(text: str, body: int, number: int) -> tuple[ParsedCall | None, str | None, int]:
    """Parse one block whose JSON starts at `body`: (call, None, end) or (None, error, body)."""
    where = f"tool call {number}"
    position = body
    while position < len(text) and text[position].isspace():
        position += 1
    try:
        payload, position = _DECODER.raw_decode(text, position)
    except json.JSONDecodeError as error:
        snippet = text[body:body + 80].strip()
        return None, f"{where}: not valid JSON ({error.msg}): {snippet!r}", body
    rest = text[position:]
    stripped = rest.lstrip()
    if not stripped.startswith(TOOL_CALL_CLOSE):
        found = f"found {stripped[:20]!r}" if stripped else "the text ends"
        return None, f"{where}: unclosed block: expected {TOOL_CALL_CLOSE} after the JSON, {found}", body
    end = position + (len(rest) - len(stripped)) + len(TOOL_CALL_CLOSE)
    if not isinstance(payload, dict):
        return None, f"{where}: expected a JSON object {{\"name\": ..., \"arguments\": {{...}}}}, got {payload!r}", body
    try:
        name, arguments = call_name_and_arguments(payload)
    except ValueError as error:
        return None, f"{where}: {error}", body
    return ParsedCall(name=name, arguments=arguments), None, end


def normalize_result(content: Any) -> str:
    """A tool result as JSON text: JSON text re-dumped in one spelling, anything else dumped as JSON."""
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError:
            pass  # plain text becomes a JSON string
    return json.dumps(content, ensure_ascii=False)


def normalize_tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the chat templates expect them (a copy; messages without tools pass unchanged).

    Assistant `tool_calls` get `{"name", "arguments": dict}` functions (arguments given as JSON text are
    parsed, so every spelling renders the same); `tool` messages get their `name` (from the call their
    `tool_call_id` answers when missing) and their content as normalised JSON text; a null content is "".
    ValueError names what is wrong.
    """
    names: dict[str, str] = {}
    result = []
    for index, message in enumerate(messages):
        if message.get("tool_calls"):
            calls = []
            for number, call in enumerate(message["tool_calls"]):
                name, arguments = call_name_and_arguments(call)
                call_id = call.get("id") or f"call_{number}"
                names[call_id] = name
                calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
            message = {**message, "content": message.get("content") or "", "tool_calls": calls}
        elif message.get("role") == "tool":
            name = message.get("name") or names.get(message.get("tool_call_id", ""))
            if not name:
                raise ValueError(f"message {index}: a tool message needs a `name` or the `tool_call_id` of a call "
                                 "made before it")
            message = {**message, "name": name, "content": normalize_result(message.get("content", ""))}
        elif message.get("content") is None:
            message = {**message, "content": ""}
        result.append(message)
    return result


def tool_definitions(tools: list[Any]) -> list[dict[str, Any]]:
    """OpenAI tool dicts from OpenAI dicts, bare function dicts or objects with `.openai()` (lawtune Tools)."""
    definitions = []
    for tool in tools:
        if hasattr(tool, "openai"):
            tool = tool.openai()
        if isinstance(tool, dict) and "function" not in tool and "name" in tool:
            tool = {"type": "function", "function": tool}
        if not isinstance(tool, dict) or not isinstance(tool.get("function"), dict):
            raise ValueError(f"a tool definition must be {{\"type\": \"function\", \"function\": {{...}}}}: got {tool!r}")
        definitions.append(tool)
    return definitions
