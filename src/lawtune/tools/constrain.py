"""Lazy tool-call grammar for `tool_choice: auto`: free text until the model writes `<tool_call>`, then the call.

    processor = ToolCallLogitsProcessor(tokenizer, [tools_row0, tools_row1], prompt_width, stop_ids, policy,
                                        conversations=[messages_row0, messages_row1])
    model.generate(..., logits_processor=[processor])      # lawtune.evaluation.generation.decoding_hooks

As llama.cpp and vLLM do for tools: a turn is free text (the answer's repetition control applies) until the
text holds `<tool_call>`; from there the block is decoded under the llguidance grammar of one call of an offered
tool — `\\n{"name": NAME, "arguments": {…}}\\n</tool_call>` with NAME one of the row's tools and the arguments
following its parameter schema (no keys beyond it, json.dumps's layout: what the chat template renders in
training). A mangled name or an invented argument is then impossible; the model only picks the values. Inside a
block no repetition penalty applies: a call repeats quotes, colons and underscores by its nature, and the
answer-side penalty of 1.3 pushed a tuned model to `severance-pay` (docs/tools.md "Measured"). When the block
closes the turn is free again (another block re-arms the grammar: parallel calls).

Given the row's conversation (`call_rules`), the grammar also holds what the conversation allows:
- **Answer after results**: when every call of the last round returned a result (no `error`), nothing is callable:
  the model read its results and has to answer. After a round with a failed call, the tools that answered since
  the user's last message stay out and a failed one may be called again (with other values).
- **Figures copied from the user's words**: a figure parameter (`x-figure` amount / years / months / hours, or a
  date) may only take a span of the user turns that `lawtune.tools.figures.figure_spans` finds for its kind
  (`"monthly_wage": "8000"` only if the user wrote 8000); with no such span the parameter cannot be given, and a
  tool that requires it cannot be called.
- When no offered tool is callable, the turn may not open `<tool_call>` at all (`NO_CALL_GRAMMAR`): it answers.

Rows without tools (None) are only penalized, as `lawtune.modeling.decoding.AnswerLogitsProcessor` does.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from lawtune.modeling.grammar import grammar_mask, ll_tokenizer
from lawtune.modeling.tool_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

# the layout json.dumps writes (and the chat templates' tojson): no free whitespace, which a small model given
# the choice fills until its budget runs out
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def call_schema(function: dict[str, Any]) -> dict[str, Any]:
    """`{"name": NAME, "arguments": {…}}` with the function's parameter schema, in json.dumps's layout."""
    parameters = _without_formats(dict(function.get("parameters") or {"type": "object", "properties": {}}))
    # as OpenAI's strict mode: no keys beyond the schema's (a small model would invent long ones)
    parameters.setdefault("additionalProperties", False)
    return {"type": "object", "properties": {"name": {"const": function["name"]}, "arguments": parameters},
            "required": ["name", "arguments"], "additionalProperties": False, "x-guidance": JSON_LAYOUT}


def _without_formats(schema: Any) -> Any:
    """The schema without `format` (a date may be written as the question writes it, 2024年3月1号, which the tools
    read: lawtune.tools.periods.parse_day; the call grammar must not force YYYY-MM-DD) and without `x-figure`."""
    if isinstance(schema, list):
        return [_without_formats(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {key: _without_formats(value) for key, value in schema.items() if key not in ("format", "x-figure")}


def block_grammar(tools: list[dict[str, Any]]) -> str:
    """The llguidance Lark grammar of what follows `<tool_call>`: one call of one of `tools`, then the close tag."""
    functions = [tool.get("function", tool) for tool in tools]
    alternatives = " | ".join(f"%json {json.dumps(call_schema(f), ensure_ascii=False)}" for f in functions)
    return f'start: "\\n" ({alternatives}) "\\n{TOOL_CALL_CLOSE}"\n'


# A turn that may not call: any text that never holds `<tool` (llguidance's `&` and `~` on a lexeme). Not only the
# whole tag: a tuned model kept from `<tool_call>` wrote `<tool_call}>` and `<tool_call >` instead (2026-12-07).
NO_CALL_STEM = TOOL_CALL_OPEN[:5]  # "<tool"
NO_CALL_GRAMMAR = f"start: TEXT\nTEXT: /(?s:.*)/ & ~/(?s:.*{NO_CALL_STEM}.*)/\n"


def last_round_succeeded(messages: list[dict[str, Any]]) -> bool:
    """Whether the conversation ends with tool results, none of them an error (the model must now answer)."""
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(message)
    return bool(results) and not any(_is_error(message.get("content")) for message in results)


def _is_error(content: Any) -> bool:
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError:
            return False  # a client's tool answered in plain text: an answer all the same
    return isinstance(content, dict) and "error" in content


def answered_tools(messages: list[dict[str, Any]]) -> set[str]:
    """Names of the tools that returned a result (not an error) since the last user message."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    names: dict[str, str] = {}
    answered = set()
    for message in messages[last_user + 1:]:
        for call in message.get("tool_calls") or []:
            names[call.get("id", "")] = (call.get("function") or {}).get("name", "")
        if message.get("role") != "tool" or _is_error(message.get("content")):
            continue
        name = message.get("name") or names.get(message.get("tool_call_id", ""))
        if name:
            answered.add(name)
    return answered


def user_spans(messages: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The figure spans (lawtune.tools.figures) of every user turn, in order, without repeats."""
    from lawtune.tools.figures import figure_spans

    spans: dict[str, list[str]] = {}
    for message in messages:
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            for kind, found in figure_spans(message["content"]).items():
                spans.setdefault(kind, [])
                spans[kind] += [span for span in found if span not in spans[kind]]
    return spans


def _restricted(parameters: dict[str, Any], spans: dict[str, list[str]]) -> dict[str, Any] | None:
    """The parameter schema with each figure parameter an enum of the user's spans of its kind; a figure parameter
    without spans is left out; None when a required one has none (the tool cannot be called)."""
    properties, required = {}, list(parameters.get("required") or [])
    for key, schema in (parameters.get("properties") or {}).items():
        items = schema.get("items") if schema.get("type") == "array" else None
        kind = _figure_kind(items if isinstance(items, dict) else schema)
        if kind is None:
            properties[key] = schema
            continue
        choices = spans.get(kind) or []
        if not choices:
            if key in required:
                return None
            continue
        properties[key] = {"type": "array", "items": {"enum": choices}} if items is not None else {"enum": choices}
    return {**parameters, "properties": properties, "required": required}


def _figure_kind(schema: dict[str, Any]) -> str | None:
    if schema.get("x-figure"):
        return schema["x-figure"]
    return "date" if schema.get("format") == "date" else None


def call_rules(tools: list[dict[str, Any]], messages: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The functions a call may name next in this conversation (the module docstring's rules), figure parameters
    restricted to the user's spans; [] when the turn may not call. Without a conversation: every offered tool."""
    functions = [tool.get("function", tool) for tool in tools]
    if messages is None:
        return functions
    if last_round_succeeded(messages):
        return []
    answered, spans = answered_tools(messages), user_spans(messages)
    allowed = []
    for function in functions:
        if function["name"] in answered:
            continue
        parameters = _restricted(function.get("parameters") or {"type": "object", "properties": {}}, spans)
        if parameters is not None:
            allowed.append({**function, "parameters": parameters})
    return allowed


class _Row:
    """One row's state: how many generated tokens were read, the text since the last block, the open block."""

    def __init__(self, grammar: Any, no_call: Any = None):
        self.grammar = grammar  # llguidance grammar of a block (None: the row offers no tools, or may not call)
        self.no_call = no_call  # the matcher of a turn that may not open a block (no offered tool is callable)
        self.read = 0
        self.free_ids: list[int] = []  # tokens since the last block closed (searched for `<tool_call>`)
        self.matcher: Any = None  # the open block's matcher
        self.broken = False  # an open block the grammar could not follow (its start did not tokenize along)
        self.ended = False  # the row emitted a stop token: what follows is generate()'s padding


class ToolCallLogitsProcessor:
    """A transformers logits processor: the answer's penalties outside call blocks, the call grammar inside."""

    def __init__(self, tokenizer: Any, tools: list[list[dict[str, Any]] | None], prompt_width: int,
                 stop_ids: Iterable[int], policy: Any,
                 conversations: list[list[dict[str, Any]] | None] | None = None):
        """`conversations`: per row, the messages its prompt renders (the rules of `call_rules`); None: every
        offered tool is callable with any values its schema allows."""
        import llguidance

        self.tokenizer, self.prompt_width, self.policy = tokenizer, prompt_width, policy
        self.stop_ids = frozenset(stop_ids)
        self.ll = ll_tokenizer(tokenizer, self.stop_ids)
        grammars: dict[str, Any] = {}
        self._free_masks: dict[tuple[int, str], Any] = {}  # the no-call mask away from a `<tool_call>` start
        self.rows = []
        for row_tools, messages in zip(tools, conversations or [None] * len(tools)):
            if not row_tools:
                self.rows.append(_Row(None))
                continue
            functions = call_rules(row_tools, messages)
            lark = block_grammar(functions) if functions else NO_CALL_GRAMMAR
            if lark not in grammars:
                grammars[lark] = llguidance.LLMatcher.grammar_from_lark(lark)
            if functions:
                self.rows.append(_Row(grammars[lark]))
            else:
                self.rows.append(_Row(None, llguidance.LLMatcher(self.ll, grammars[lark], log_level=0)))

    def in_block(self, row: int) -> bool:
        return self.rows[row].matcher is not None or self.rows[row].broken

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        from lawtune.modeling.decoding import penalize

        out = []
        for index in range(scores.shape[0]):
            generated = input_ids[index, self.prompt_width:].tolist()
            state = self.rows[index]
            for token in generated[state.read:]:
                self._advance(state, token)
            state.read = len(generated)
            logits = scores[index]
            if state.matcher is not None:
                allowed = _mask(state.matcher, logits.shape[-1], logits.device)
                logits = logits.float().masked_fill(~allowed, float("-inf"))
            elif not state.broken and self.policy is not None and self.policy.penalizes:
                logits = penalize(logits, generated, self.policy, self.stop_ids)
            if state.no_call is not None and not state.ended:
                logits = logits.float().masked_fill(~self._no_call_mask(state, generated, logits), float("-inf"))
            out.append(logits.to(scores.dtype))
        return torch.stack(out)

    def _no_call_mask(self, state: _Row, generated: list[int], logits: Any) -> Any:
        """The tokens a turn that may not call can write next. Only text ending with a start of `<tool` (`<`, `<t`,
        …) needs the matcher's full mask (~10 ms over Gemma's 262k tokens on a CPU); anywhere else the allowed
        tokens are those of the empty turn (every token not holding `<tool`), computed once — except after the
        first bytes of a character (byte tokens: `\ufffd` so far), which only the matcher knows how to finish."""
        tail = self.tokenizer.decode(generated[-len(NO_CALL_STEM):], skip_special_tokens=False)
        if tail.endswith("\ufffd") or any(tail.endswith(NO_CALL_STEM[:k]) for k in range(1, len(NO_CALL_STEM))):
            return _mask(state.no_call, logits.shape[-1], logits.device)
        key = (logits.shape[-1], str(logits.device))
        if key not in self._free_masks:
            import llguidance

            fresh = llguidance.LLMatcher(self.ll, llguidance.LLMatcher.grammar_from_lark(NO_CALL_GRAMMAR), log_level=0)
            self._free_masks[key] = _mask(fresh, *key[:1], logits.device)
        return self._free_masks[key]

    def _advance(self, state: _Row, token: int) -> None:
        import llguidance

        if state.ended or token in self.stop_ids:
            # a finished row (or one the repetition stop cut, maybe inside a block) is padded: nothing to follow
            state.ended, state.matcher, state.broken = True, None, False
            return
        if state.no_call is not None:
            state.no_call.consume_token(token)
            if state.no_call.is_error():  # a token the mask allowed cannot fail; if it did, stop constraining
                state.no_call = None
            return
        if state.matcher is not None:
            state.matcher.consume_token(token)
            if state.matcher.is_error() or state.matcher.is_accepting():
                state.matcher, state.free_ids = None, []
            return
        state.free_ids.append(token)
        if state.grammar is None:
            return
        text = self.tokenizer.decode(state.free_ids, skip_special_tokens=False)
        if state.broken:
            if TOOL_CALL_CLOSE in text:
                state.broken, state.free_ids = False, []
            return
        start = text.find(TOOL_CALL_OPEN)
        if start < 0:
            return
        rest = text[start + len(TOOL_CALL_OPEN):]  # what the token that closed the tag wrote after it
        matcher = llguidance.LLMatcher(self.ll, state.grammar, log_level=0)  # a rejected token is handled here
        rest_ids = self.tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else []
        for rest_id in rest_ids:
            matcher.consume_token(rest_id)
        if matcher.is_error():
            state.broken, state.free_ids = True, []
            return
        state.matcher, state.free_ids = matcher, []


def _mask(matcher: Any, vocab: int, device: Any) -> Any:
    """The tokens the matcher allows next, as a bool tensor over `vocab` logits on `device`."""
    return grammar_mask(matcher, vocab).to(device)
