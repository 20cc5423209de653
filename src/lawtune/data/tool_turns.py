"""Tool-use turns of the formats `lawtune prepare` reads, mapped to the OpenAI messages lawtune writes.

    from lawtune.data.tool_turns import tool_definitions_of, openai_tool_turns
    tools = tool_definitions_of(record.get("tools"))       # list of OpenAI tool dicts, None, or an error phrase
    turns = openai_tool_turns(record["conversations"])     # list of messages, or an error phrase

Read (docs/prepare.md, "Tool-use conversations"):
- ChatGLM3 finetune_demo: {"role": "tool", "name", "parameters": {...}, "observation": ...} = one call and its
  result; a plain assistant turn right before it is the call turn's content (ChatGLM3 writes "let me look
  that up" as its own turn).
- OpenAI: assistant `tool_calls` (arguments as JSON text or an object), {"role": "tool", "tool_call_id",
  "name"?, "content"}; the older `function_call` / {"role": "function"} pair too.
- sharegpt (LLaMA-Factory): {"from": "function_call", "value": "{\"name\", \"arguments\"}"} (or a JSON list of
  calls) and {"from": "observation", "value": ...}; `tools` may be a JSON string of function definitions.
Written: assistant {"content", "tool_calls": [{"id": "call_N", "type": "function", "function": {"name",
"arguments": "<JSON text>"}}]} and {"role": "tool", "tool_call_id", "name", "content": "<JSON text or text>"}.
"""

from __future__ import annotations

import json
from typing import Any

from lawtune.modeling.tool_format import call_name_and_arguments


def tool_definitions_of(value: Any) -> list[dict[str, Any]] | None | str:
    """OpenAI tool dicts from OpenAI dicts, bare function dicts (ChatGLM3, LLaMA-Factory) or their JSON text;
    None when absent or empty; an error phrase when malformed."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return "'tools' is text that is not JSON"
    if not isinstance(value, list):
        return "'tools' must be a list"
    tools = []
    for tool in value:
        if isinstance(tool, dict) and "function" not in tool and isinstance(tool.get("name"), str):
            tool = {"type": "function", "function": tool}
        if not (isinstance(tool, dict) and isinstance(tool.get("function"), dict)
                and isinstance(tool["function"].get("name"), str)):
            return "a 'tools' entry is not a function definition"
        tools.append(tool)
    return tools or None


def has_tool_turns(turns: list[Any]) -> bool:
    return any(isinstance(turn, dict) and (turn.get("role") in ("tool", "function") or turn.get("tool_calls")
                                           or turn.get("function_call")) for turn in turns)


class ToolTurns:
    """Appends OpenAI messages, numbering calls and remembering which call id a result answers."""

    def __init__(self, messages: list[dict[str, Any]] | None = None) -> None:
        self.messages: list[dict[str, Any]] = messages or []
        self.open_calls: list[tuple[str, str]] = []  # (id, name) of calls without a result yet
        self.count = 0

    def call(self, calls: list[tuple[str, dict[str, Any]]], content: str = "", merge: bool = True) -> None:
        """One assistant turn with these calls; a plain assistant turn just before it becomes its content."""
        previous = self.messages[-1] if self.messages else None
        entries = []
        for name, arguments in calls:
            call_id = f"call_{self.count}"
            self.count += 1
            self.open_calls.append((call_id, name))
            entries.append({"id": call_id, "type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}})
        if merge and previous and previous["role"] == "assistant" and not previous.get("tool_calls") and not content:
            previous["tool_calls"] = entries
            return
        self.messages.append({"role": "assistant", "content": content, "tool_calls": entries})

    def result(self, content: Any, name: str | None = None, call_id: str | None = None) -> str | None:
        """The tool turn answering `call_id` (else the oldest open call); an error phrase if none is open."""
        match = next((open_call for open_call in self.open_calls if open_call[0] == call_id), None) \
            or next((open_call for open_call in self.open_calls if name and open_call[1] == name), None) \
            or (self.open_calls[0] if self.open_calls and call_id is None else None)
        if match is None:
            return "a tool result answers no call before it"
        self.open_calls.remove(match)
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        self.messages.append({"role": "tool", "tool_call_id": match[0], "name": name or match[1], "content": text})
        return None


def openai_tool_turns(turns: list[Any]) -> list[dict[str, Any]] | str:
    """ChatGLM3 / OpenAI turns (mixed with plain ones) as OpenAI messages; an error phrase when malformed."""
    built = ToolTurns()
    ids: dict[str, str] = {}  # the source's call ids → ours
    for turn in turns:
        if not isinstance(turn, dict):
            return "a turn is not an object"
        role = turn.get("role")
        try:
            if role == "tool" and ("observation" in turn or "parameters" in turn):  # ChatGLM3
                parameters = turn.get("parameters") or {}
                name, arguments = call_name_and_arguments({"name": turn.get("name"), "arguments": parameters})
                built.call([(name, arguments)])
                problem = built.result(turn.get("observation", ""), name)
            elif role == "assistant" and (turn.get("tool_calls") or turn.get("function_call")):
                calls = turn.get("tool_calls") or [{"function": turn["function_call"]}]
                if not isinstance(calls, list):
                    return "'tool_calls' is not a list"
                parsed = [call_name_and_arguments(call) for call in calls]
                before = built.count
                built.call(parsed, content=(turn.get("content") or "").strip(), merge=False)
                for offset, call in enumerate(calls):
                    if isinstance(call, dict) and call.get("id"):
                        ids[call["id"]] = f"call_{before + offset}"
                problem = None
            elif role in ("tool", "function"):
                source_id = turn.get("tool_call_id")
                problem = built.result(turn.get("content", ""), turn.get("name"),
                                       ids.get(source_id) if source_id else None)
            else:
                built.messages.append(dict(turn))
                problem = None
        except ValueError as error:
            return str(error)
        if problem:
            return problem
    if built.open_calls:
        return "a tool call has no result"
    return built.messages


def sharegpt_call(value: str, built: ToolTurns) -> str | None:
    """A sharegpt `function_call` value (one call object or a list of them) as a call turn."""
    try:
        payload = json.loads(value)
    except json.JSONDecodeError:
        return "a function_call value is not JSON"
    try:
        calls = [call_name_and_arguments(call) for call in (payload if isinstance(payload, list) else [payload])]
    except (ValueError, AttributeError) as error:
        return str(error)
    built.call(calls)
    return None
