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
  tool that requires it cannot be called — nor one none of whose `x-needs-one-of` groups is left (a severance
  question without any length of service: the call could only fail; the model asks back instead).
- **Booleans said in words**: a boolean with `x-said-as` phrases (`open_ended`: 无固定期限) is offered only when
  a user turn holds one of them; with `x-needs-one-of` naming it as a group, a tool is not callable on booleans
  the user never spoke of (`probation_limits {"task_based": true}` on a question about something else).
- **A tool about something the user never names** (`x-said-about`, `@said_about("试用")`) is not callable.
- **What the user's words settle, required** (`said_required=True`, DecodingPolicy.tool_said_required): a
  parameter with `x-required-when-said` phrases (`@required_when_said`) must be given when a clause of the user's
  words says one (`said_in`: not asked about, 算不算违法解除？, nor denied, 不是违法辞退): a boolean as true
  (违法辞退 → `"unlawful": true`), a figure parameter as a span of its kind from such a clause (周末加班8小时 →
  `"rest_day_hours": "8小时"`); a span in a clause that names another parameter of the tool is not its to take
  (平时下班后加班12小时 never becomes rest-day hours). Spans in clauses naming none stay open to every such
  parameter, as before. The model still writes every other value and the call itself. A parameter of one case
  (`x-only-with`, `@only_with`: the end of employment, for wages owed while employed) is offered only when the
  user's words settle that case's boolean.
- **The result's figure stated** (`result_figure=True`, DecodingPolicy.tool_result_figure, off by default): the
  answer after a round whose calls all returned results may not end (its stop tokens are masked) before its text
  states every figure the results return (`result_figures`: each amount above 0 and each date of `result`, in
  one of its usual spellings). The figure comes from the results, never from the question; the model still picks
  every token, where and how it states it; a turn that never does runs to its token budget.
- When no offered tool is callable, the turn may not open `<tool_call>` at all (`NO_CALL_GRAMMAR`): it answers.
- **Figures copied into the answer** (`figures=True`, DecodingPolicy.tool_figures): in the answer after a round
  whose calls all returned results, every number the turn writes in Arabic digits is one the results or the
  user's words hold (`answer_numbers`; `answer_grammar`), and digits are exempt from the repetition penalty there
  (28000 repeats its 0s). It keeps invented figures out of the digits; it does not make the model write the
  result (the answer may still omit it, or write the question's wage instead), and numbers in Chinese numerals
  (两万八千) are not constrained. Nothing is written for the model: every token is its own choice among those
  allowed.

Rows without tools (None) are only penalized, as `lawtune.modeling.decoding.AnswerLogitsProcessor` does.
`LazyCall` is one sequence's state: the processor runs one per row (eval, infer, chat) and `lawtune serve`'s
local engines run one per sequence under tool_choice auto (`GenerationRequest.tool_rules`), so one rule set holds
everywhere.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from lawtune.modeling.grammar import grammar_mask, ll_tokenizer
from lawtune.modeling.tool_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from lawtune.tools.tool import ABOUT_KEY, NEEDS_KEY, ONLY_WITH_KEY, REQUIRED_WHEN_SAID_KEY, SAID_KEY

# the layout json.dumps writes (and the chat templates' tojson): no free whitespace, which a small model given
# the choice fills until its budget runs out
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def call_schema(function: dict[str, Any]) -> dict[str, Any]:
    """`{"name": NAME, "arguments": {…}}` with the function's parameter schema, in json.dumps's layout."""
    parameters = _without_formats(dict(function.get("parameters") or {"type": "object", "properties": {}}))
    # as OpenAI's strict mode: no keys beyond the schema's (a small model would invent long ones); the ways of an
    # `anyOf` (`_one_length`) carry it each
    if "anyOf" not in parameters:
        parameters.setdefault("additionalProperties", False)
    return {"type": "object", "properties": {"name": {"const": function["name"]}, "arguments": parameters},
            "required": ["name", "arguments"], "additionalProperties": False, "x-guidance": JSON_LAYOUT}


def _without_formats(schema: Any) -> Any:
    """The schema without `format` (a date may be written as the question writes it, 2024年3月1号, which the tools
    read: lawtune.tools.periods.parse_day; the call grammar must not force YYYY-MM-DD) and without lawtune's own
    `x-` keys (`x-figure`, `x-needs-one-of`: read by `call_rules`, not JSON Schema)."""
    if isinstance(schema, list):
        return [_without_formats(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {key: _without_formats(value) for key, value in schema.items()
            if key != "format" and not key.startswith("x-")}


def block_grammar(tools: list[dict[str, Any]]) -> str:
    """The llguidance Lark grammar of what follows `<tool_call>`: one call of one of `tools`, then the close tag."""
    functions = [tool.get("function", tool) for tool in tools]
    alternatives = " | ".join(f"%json {json.dumps(call_schema(f), ensure_ascii=False)}" for f in functions)
    return f'start: "\\n" ({alternatives}) "\\n{TOOL_CALL_CLOSE}"\n'


# A turn that may not call: any text that never holds `<tool` (llguidance's `&` and `~` on a lexeme). Not only the
# whole tag: a tuned model kept from `<tool_call>` wrote `<tool_call}>` and `<tool_call >` instead (2026-12-07), and
# in any case: `<TOOL_CALL> {…}` as the text of an ask-back answer (s34).
NO_CALL_STEM = TOOL_CALL_OPEN[:5]  # "<tool", matched in any case
_STEM_ANY_CASE = "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in NO_CALL_STEM)
NO_CALL_GRAMMAR = f"start: TEXT\nTEXT: /(?s:.*)/ & ~/(?s:.*{_STEM_ANY_CASE}.*)/\n"


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
    for text in user_turns(messages):
        for kind, found in figure_spans(text).items():
            spans.setdefault(kind, [])
            spans[kind] += [span for span in found if span not in spans[kind]]
    return spans


def user_turns(messages: list[dict[str, Any]]) -> list[str]:
    """The text of every user turn with text content, in order."""
    return [m["content"] for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str)]


def user_text(messages: list[dict[str, Any]]) -> str:
    """The user turns' text, one per line (what `x-said-as` phrases are looked for in)."""
    return "\n".join(user_turns(messages))


def _restricted(parameters: dict[str, Any], spans: dict[str, list[str]], said: str = "",
                turns: list[str] | None = None) -> dict[str, Any] | None:
    """The parameter schema with each figure parameter an enum of the user's spans of its kind; a figure parameter
    without spans is left out, and so is a boolean whose `x-said-as` phrases the user's words (`said`) hold none
    of; None when a required one is left out, or when no group of its `x-needs-one-of` is left whole (the tool
    cannot be called: it cannot compute without them). With the user turns (`turns`), what they settle is required
    (`x-required-when-said`, `said_settled`)."""
    properties, required = {}, list(parameters.get("required") or [])
    settled = said_settled(parameters, turns, spans) if turns is not None else {}
    for key, schema in (parameters.get("properties") or {}).items():
        if SAID_KEY in schema and not any(phrase in said for phrase in schema[SAID_KEY]):
            if key in required:
                return None
            continue
        if turns is not None and ONLY_WITH_KEY in schema and settled.get(schema[ONLY_WITH_KEY]) is not True:
            continue  # a parameter of a case the user's words do not state (`x-only-with`)
        items = schema.get("items") if schema.get("type") == "array" else None
        kind = _figure_kind(items if isinstance(items, dict) else schema)
        if kind is None:
            if settled.get(key) is True:  # a boolean the user's words say: given, and true
                properties[key] = {**schema, "const": True}
                if key not in required:
                    required.append(key)
            else:
                properties[key] = schema
            continue
        choices, must = settled.get(key, (spans.get(kind) or [], False))
        choices = [span for span in choices if _fits(kind, span)]
        if not choices:
            if key in required:
                return None
            continue
        properties[key] = {"type": "array", "items": {"enum": choices}} if items is not None else {"enum": choices}
        if must and key not in required:
            required.append(key)
    needs = parameters.get(NEEDS_KEY)
    if needs and not any(all(key in properties for key in group) for group in needs):
        return None
    return _one_length({**parameters, "properties": properties, "required": required},
                       {key: _figure_kind(schema) for key, schema in (parameters.get("properties") or {}).items()})


def _one_length(parameters: dict[str, Any], kinds: dict[str, str | None]) -> dict[str, Any]:
    """A length the user wrote in years and months (12年零4个月) is given once: whole (as the years, or as the months
    alone) or as its two parts together (12年 + 4个月) — never the whole and a part (`{"years": "八年十个月", "months":
    "十个月"}`, which the tool refuses; the tuned model wrote it, s34) nor the whole twice. The schema becomes `anyOf` those
    ways; unchanged when the tool has no years-and-months pair or the user wrote no such length."""
    properties, required = parameters["properties"], parameters["required"]
    years = next((key for key in properties if kinds.get(key) == "years"), None)
    months = next((key for key in properties if kinds.get(key) == "months"), None)
    if years is None or months is None:
        return parameters
    from lawtune.tools.figures import length_parts

    choices = {key: properties[key]["enum"] for key in (years, months)}
    wholes = {span: parts for span in choices[years] if (parts := length_parts(span))}
    if not wholes:
        return parameters
    year_parts, month_parts = {y for y, _ in wholes.values()}, {m for _, m in wholes.values()}

    def way(year_spans: list[str] | None, month_spans: list[str] | None, both: bool = False) -> dict[str, Any] | None:
        spans = {years: year_spans, months: month_spans}
        kept = {key: ({"enum": spans[key]} if key in spans else schema) for key, schema in properties.items()
                if key not in spans or spans[key]}
        must = [key for key in required if key in kept] + ([years, months] if both else [])
        if any(key not in kept for key in required):
            return None
        return {**parameters, "properties": kept, "required": list(dict.fromkeys(must)), "additionalProperties": False}

    ways = [way([y], [m], both=True) for y, m in dict.fromkeys(wholes.values())]
    ways.append(way([s for s in choices[years] if s not in year_parts],
                    [s for s in choices[months] if s not in wholes and s not in month_parts]))
    ways.append(way(None, [s for s in choices[months] if s in wholes]))
    ways = [w for w in ways if w is not None and (years in w["properties"] or months in w["properties"])]
    # the ways hold the keys; beside `anyOf`, `additionalProperties: false` would allow none of them
    return {key: value for key, value in parameters.items()
            if key not in ("properties", "required", "additionalProperties")} | {
        "anyOf": [{key: value for key, value in w.items() if not key.startswith("x-")} for w in ways]}


# ---- what the user's words settle (`x-required-when-said`) ------------------------------------------------------
CLAUSE_END = re.compile(r"[，,。；;！!？?\n]")
# `A…B`: A, at most this many characters of the same clause, then B (违法把我辞退, 无故就把我给开除)
PHRASE_GAP = 4
# words just before a phrase that make it a question or a denial, not a statement (算不算违法解除, 不是违法辞退,
# 没有拖欠工资)
NOT_SAID_BEFORE = ("不是", "并非", "不算", "不属于", "是否", "是不是", "算不算", "属不属于", "有没有", "没有", "被迫")
_PATTERNS: dict[str, re.Pattern[str]] = {}


def clauses(text: str) -> list[str]:
    """The clauses of a user turn, split at Chinese and Latin commas, full stops, semicolons, ! and ?."""
    return [clause for clause in CLAUSE_END.split(text) if clause.strip()]


def _pattern(phrase: str) -> re.Pattern[str]:
    if phrase not in _PATTERNS:
        first, gap, second = phrase.partition("…")
        _PATTERNS[phrase] = re.compile(re.escape(first) + (f".{{0,{PHRASE_GAP}}}?" + re.escape(second) if gap else ""))
    return _PATTERNS[phrase]


def said_in(clause: str, phrases: Iterable[str]) -> bool:
    """Whether the clause says one of the phrases as a statement: not after a word that asks or denies
    (NOT_SAID_BEFORE, within 4 characters; 被迫 too: 被迫解除 is the employee's own leaving), and not as the
    clause's question (这算违法解除吗)."""
    for phrase in phrases:
        first = phrase.partition("…")[0]
        for match in _pattern(phrase).finditer(clause):
            # the words before the phrase, and in its gap (违法拖欠工资被迫解除: not the employer's dismissal)
            around = clause[max(0, match.start() - 4):match.start()] + "｜" + match.group()[len(first):]
            if any(word in around for word in NOT_SAID_BEFORE):
                continue
            if re.fullmatch(r".{0,3}[吗么嘛]\s*", clause[match.end():]):
                continue
            return True
    return False


def said_settled(parameters: dict[str, Any], turns: list[str] | None,
                 spans: dict[str, list[str]]) -> dict[str, Any]:
    """Per parameter with `x-required-when-said` phrases, what the user turns settle: a boolean → True when a clause
    says it; a figure parameter → (its choices, required): the spans of its kind in clauses that say it (required),
    plus those in clauses that name no parameter of the tool (open to each); without spans of its own, those alone
    (not required). A figure kind no clause attributes is left as it was (absent from the result)."""
    from lawtune.tools.figures import figure_spans

    properties = parameters.get("properties") or {}
    phrases = {key: schema[REQUIRED_WHEN_SAID_KEY] for key, schema in properties.items()
               if REQUIRED_WHEN_SAID_KEY in schema}
    if not phrases or not turns:
        return {}
    pieces = [(clause, figure_spans(clause)) for text in turns for clause in clauses(text)]  # each clause's spans, once
    settled: dict[str, Any] = {}
    figures = {key: _figure_kind(properties[key]) for key in phrases}
    for key, kind in figures.items():
        if kind is None and any(said_in(clause, phrases[key]) for clause, _ in pieces):
            settled[key] = True
    for kind in {kind for kind in figures.values() if kind}:
        keys = [key for key, other in figures.items() if other == kind]
        own: dict[str, list[str]] = {key: [] for key in keys}
        open_spans: list[str] = []
        for clause, clause_spans in pieces:
            found = [span for span in clause_spans.get(kind) or [] if span in (spans.get(kind) or [])]
            named = [key for key in keys if said_in(clause, phrases[key])]
            for span in found:
                for target in (named or [None]):
                    bucket = own[target] if target else open_spans
                    if span not in bucket:
                        bucket.append(span)
        if not any(own.values()):
            continue  # no clause says which kind its figures are: the plain rule
        for key in keys:
            settled[key] = (own[key] + [span for span in open_spans if span not in own[key]], bool(own[key]))
    return settled


def _fits(kind: str, span: str) -> bool:
    """Whether a span is a value of its kind's parameter as the tools name them: `years` hold 年 (3年, 3年5个月, 三年,
    一年半), never a length in months alone (156个月 is `months`); `months` never a whole number of years alone (3年,
    八年: as `months` beside `years` the length counts twice, 3年 + 3年 = 6 years, measured s34 with `unlawful`
    required after `years`) — a span with a part in months stays (3年5个月, 一年半, 半年, 41个月)."""
    if kind == "years":
        return "年" in span
    if kind == "months":
        return "年" not in span or not span.endswith("年") or span.endswith("半年")
    return True


def _figure_kind(schema: dict[str, Any]) -> str | None:
    if schema.get("x-figure"):
        return schema["x-figure"]
    return "date" if schema.get("format") == "date" else None


def call_rules(tools: list[dict[str, Any]], messages: list[dict[str, Any]] | None,
               said_required: bool = True) -> list[dict[str, Any]]:
    """The functions a call may name next in this conversation (the module docstring's rules), figure parameters
    restricted to the user's spans, and with `said_required` what the user's words settle required; [] when the
    turn may not call. Without a conversation: every offered tool."""
    functions = [tool.get("function", tool) for tool in tools]
    if messages is None:
        return functions
    if last_round_succeeded(messages):
        return []
    answered, spans, said = answered_tools(messages), user_spans(messages), user_text(messages)
    allowed = []
    for function in functions:
        if function["name"] in answered:
            continue
        about = (function.get("parameters") or {}).get(ABOUT_KEY)
        if about and not any(phrase in said for phrase in about):
            continue  # the user never spoke of its subject (`x-said-about`)
        parameters = _restricted(function.get("parameters") or {"type": "object", "properties": {}}, spans, said,
                                 user_turns(messages) if said_required else None)
        if parameters is not None:
            allowed.append({**function, "parameters": parameters})
    return allowed


# ---- figures copied into the answer after tool results ----------------------------------------------------------
DIGITS = "0-9０-９"  # fullwidth digits count as digits: never an escape from the rule
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_ARTICLE = re.compile(r"第([零〇一二两三四五六七八九十百千]+)条")


def answer_numbers(messages: list[dict[str, Any]] | None) -> list[str] | None:
    """The numbers an answer after tool results may write in Arabic digits, as written: every number of the tool
    results since the user's last message and of the user turns (`28000`, `21.75`, `2025`, `03` and `3` of a date),
    its other usual spelling (`28,000`), the article numbers the results cite in Chinese numerals
    (第四十七条 → `47`), and the values of the user's written figures (八千 → `8000`). None when the conversation
    does not end with a round of results none of which is an error (the rule applies to that turn only)."""
    if not messages or not last_round_succeeded(messages):
        return None
    from lawtune.kb.numerals import to_int
    from lawtune.tools.figures import figure_spans, read_amount, read_count, read_months, read_years

    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    results = [_text(m.get("content")) for m in messages[last_user + 1:] if m.get("role") == "tool"]
    users = user_turns(messages)
    numbers: set[str] = set()
    for text in results + users:
        for match in _NUMBER.finditer(text):
            numbers.update(_spellings(match.group()))
    for text in results:
        for match in _ARTICLE.finditer(text):
            try:
                numbers.add(str(to_int(match.group(1))))
            except ValueError:
                continue
    readers = {"amount": read_amount, "hours": read_count, "years": read_years, "months": read_months}
    for text in users:
        for kind, spans in figure_spans(text).items():
            for span in spans if kind in readers else []:
                try:
                    value = readers[kind](span)
                except ValueError:
                    continue
                if isinstance(value, (int, float)) and value >= 0:
                    numbers.update(_spellings(_plain(value)))
    return sorted(numbers)


def result_figures(messages: list[dict[str, Any]] | None) -> list[list[str]] | None:
    """What the answer after tool results must state (`DecodingPolicy.tool_result_figure`): per figure of the
    last round's results — each `result` that is an amount above 0 (or such a member of a result object:
    probation_limits' months and wage floor) or an ISO date — its usual spellings (`28000` / `28,000`;
    `2025年8月19日` / `2025-08-19` / `2025.8.19` / `2025/8/19`, with or without leading zeros). Taken from the
    results only, never from the question. None when the conversation does not end with a round of results none
    of which is an error; [] when the results hold no such figure (a deadline that does not run yet: `null`)."""
    if not messages or not last_round_succeeded(messages):
        return None
    values: list[Any] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        content = message.get("content")
        try:
            content = json.loads(content) if isinstance(content, str) else content
        except json.JSONDecodeError:
            continue  # a client's tool answered in plain text: it names no result
        result = content.get("result") if isinstance(content, dict) else None
        values += list(result.values()) if isinstance(result, dict) else [result]
    groups: list[list[str]] = []
    for value in values:
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)) and value > 0:
            forms = sorted(_spellings(_plain(value)))
        elif isinstance(value, str) and _ISO_DAY.fullmatch(value):
            year, month, day = value.split("-")
            forms = sorted({f"{year}{a}{m}{b}{d}{c}" for m in {month, str(int(month))} for d in {day, str(int(day))}
                            for a, b, c in (("年", "月", "日"), ("-", "-", ""), (".", ".", ""), ("/", "/", ""))})
        else:
            continue
        if forms not in groups:
            groups.append(forms)
    return groups


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def states_figures(text: str, groups: list[list[str]]) -> bool:
    """Whether `text` holds one spelling of every group (`result_figures`), each as a whole number: 28000 is not
    stated by 280000 or 28000.5."""
    return all(any(re.search(f"(?<![{DIGITS}]){re.escape(form)}(?![{DIGITS}]|[.,][{DIGITS}])", text) for form in forms)
               for forms in groups)


def _text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}".rstrip("0")


def _spellings(number: str) -> set[str]:
    """`28,000` / `28000`; a run of digits with its leading zeros (`03`) and without (`3`). Not `2.8` for 2.8万:
    it would let 2.8元 through."""
    plain = number.replace(",", "")
    forms = {number, plain}
    whole, _, decimals = plain.partition(".")
    if whole.isdigit() and not decimals:
        value = int(whole)
        forms |= {str(value), f"{value:,}"}
    return {form for form in forms if form}


def answer_grammar(numbers: list[str]) -> str:
    """The llguidance Lark grammar of an answer whose every number in digits is one of `numbers` (whole: `2800`
    of 28000 is no number of its own, `28000.5` no mix of two) and which never holds `<tool`. Between two numbers
    sits any text without digits but a lone `.` or `,` (which would join them into one number)."""
    text = f"[^{DIGITS}]"
    if numbers:
        number = "(" + "|".join(re.escape(n) for n in sorted(numbers, key=len, reverse=True)) + ")"
        between = f"([^{DIGITS}.,]|{text}{text}+)"
        body = f"{text}*({number}{between})*({number}[.,]?)?"
    else:
        body = f"{text}*"
    return f"start: TEXT\nTEXT: /(?s:{body})/ & ~/(?s:.*{_STEM_ANY_CASE}.*)/\n"


def penalty_history(generated: list[int], digit_ids: frozenset[int]) -> list[int]:
    """The answer's tokens the repetition penalty counts in a figures turn: all but digits."""
    return [token for token in generated if token not in digit_ids]


_DIGIT_IDS: dict[int, frozenset[int]] = {}


def digit_token_ids(tokenizer: Any) -> frozenset[int]:
    """Token ids whose text holds a digit (Gemma: the ten single digits), once per tokenizer."""
    key = id(tokenizer)
    if key not in _DIGIT_IDS:
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        _DIGIT_IDS[key] = frozenset(i for i, piece in enumerate(pieces) if piece and any(c.isdigit() for c in piece)
                                    and not (piece.startswith("<") and piece.endswith(">")))  # <0x33>, <unused9>
    return _DIGIT_IDS[key]


_GRAMMARS: dict[str, Any] = {}  # compiled Lark grammars, by their text (rows and requests share them)
_FREE_MASKS: dict[tuple[int, int], Any] = {}  # the no-call mask away from a `<tool` start, per (ll tokenizer, vocab)


def _compiled(lark: str) -> Any:
    import llguidance

    if lark not in _GRAMMARS:
        if len(_GRAMMARS) > 256:  # a long-running server sees new figure spans in every request
            _GRAMMARS.clear()
        _GRAMMARS[lark] = llguidance.LLMatcher.grammar_from_lark(lark)
    return _GRAMMARS[lark]


class LazyCall:
    """One sequence's lazy call grammar (tool_choice auto) under its conversation's rules (`call_rules`): free text
    until the text holds `<tool_call>`, then the block's grammar until it closes; when no offered tool is callable,
    any text without `<tool`.

        lazy = LazyCall(tokenizer, ll_tokenizer(tokenizer, stops), tools, messages, stops)
        allowed = lazy.allowed(vocab)        # bool tensor, or None: every token (free text)
        lazy.consume_token(token)            # after each generated token
        lazy.in_block                        # inside a block: no repetition penalty

    The one implementation of the rules: `ToolCallLogitsProcessor` runs one per row (eval, infer, chat), and the
    server's batcher runs one per sequence as its matcher (serve, tool_choice auto):
    `lawtune.modeling.grammar.grammar_mask` takes `allowed` (and `vocab_size`) as it is, with no bitmask in between,
    and the batcher calls `consume_token` after each pick."""

    def __init__(self, tokenizer: Any, ll: Any, tools: list[dict[str, Any]] | None,
                 messages: list[dict[str, Any]] | None, stop_ids: Iterable[int], figures: bool = True,
                 result_figure: bool = False, said_required: bool = True):
        """`figures`: in the answer after a round of results, numbers in digits only as the results or the user's
        words write them, and no repetition penalty on digits (the module docstring). `result_figure`: that answer
        may not end before it states each figure of the results (`result_figures`). `said_required`: a call gives
        what the user's words settle (`said_settled`)."""
        import llguidance

        self.tokenizer, self.ll, self.stop_ids = tokenizer, ll, frozenset(stop_ids)
        self.grammar: Any = None  # the block grammar (None: the row offers no tools, or may not call)
        self.no_call: Any = None  # the matcher of a turn that may not open a block (no offered tool is callable)
        self.numbers: list[str] | None = None  # a figures turn: the numbers its digits may write
        self.must_state: list[list[str]] | None = None  # figures the answer must state before it may end
        self.stated = False  # every figure of must_state is in the turn's text
        # a figures turn's mask where the text ends in no number and no `<tool` start, per logits width asked for
        self._free_masks: dict[int, Any] = {}
        if tools:
            functions = call_rules(tools, messages, said_required=said_required)
            if functions:
                self.grammar = _compiled(block_grammar(functions))
            else:
                self.numbers = answer_numbers(messages) if figures else None
                self.must_state = (result_figures(messages) or None) if result_figure else None
                lark = NO_CALL_GRAMMAR if self.numbers is None else answer_grammar(self.numbers)
                self.no_call = llguidance.LLMatcher(ll, _compiled(lark), log_level=0)
        self.generated: list[int] = []
        self.free_ids: list[int] = []  # tokens since the last block closed (searched for `<tool_call>`)
        self.matcher: Any = None  # the open block's matcher
        self.broken = False  # an open block the grammar could not follow (its start did not tokenize along)
        self.ended = False  # a stop token was emitted: what follows is padding

    @property
    def in_block(self) -> bool:
        return self.matcher is not None or self.broken

    def penalized(self, generated: list[int]) -> list[int]:
        """The answer's tokens the repetition penalty counts: in a figures turn all but digits, else all."""
        if self.numbers is None:
            return generated
        return penalty_history(generated, digit_token_ids(self.tokenizer))

    def allowed(self, vocab: int, device: Any = None) -> Any:
        """The tokens allowed next as a bool tensor over `vocab` logits, or None when any token is."""
        if self.ended:
            return None
        if self.matcher is not None:
            return _mask(self.matcher, vocab, device)
        if self.no_call is not None:
            allowed = self._no_call_mask(vocab, device)
            if self.must_state and not self.stated:  # not yet the result's figure: the turn may not end
                allowed = allowed.clone()
                allowed[[token for token in self.stop_ids if token < vocab]] = False
            return allowed
        return None

    def _no_call_mask(self, vocab: int, device: Any) -> Any:
        """The tokens a turn that may not call can write next. Only text ending with a start of `<tool` (`<`, `<t`,
        …) needs the matcher's full mask (~10 ms over Gemma's 262k tokens on a CPU); anywhere else the allowed
        tokens are those of the empty turn (every token not holding `<tool`), computed once — except after the
        first bytes of a character (byte tokens: `\ufffd` so far), which only the matcher knows how to finish."""
        tail = self.tokenizer.decode(self.generated[-len(NO_CALL_STEM):], skip_special_tokens=False)
        if tail.endswith("\ufffd") or any(tail.lower().endswith(NO_CALL_STEM[:k]) for k in range(1, len(NO_CALL_STEM))):
            return _mask(self.no_call, vocab, device)
        if self.numbers is not None:
            # inside a number (a digit last, or a digit and . or ,) only the matcher knows what may follow; anywhere
            # else the state is the empty turn's (any text without digits, or a number's start): its mask, once
            if _in_number(tail):
                return _mask(self.no_call, vocab, device)
            if vocab not in self._free_masks:
                import llguidance

                start = llguidance.LLMatcher(self.ll, _compiled(answer_grammar(self.numbers)), log_level=0)
                self._free_masks[vocab] = _mask(start, vocab, None)
            free = self._free_masks[vocab]
            return free if device is None else free.to(device)
        key = (id(self.ll), vocab)
        if key not in _FREE_MASKS:
            import llguidance

            _FREE_MASKS[key] = _mask(llguidance.LLMatcher(self.ll, _compiled(NO_CALL_GRAMMAR), log_level=0), vocab, None)
        return _FREE_MASKS[key] if device is None else _FREE_MASKS[key].to(device)

    def consume_token(self, token: int) -> bool:
        import llguidance

        self.generated.append(token)
        if self.ended or token in self.stop_ids:
            # a finished row (or one the repetition stop cut, maybe inside a block) is padded: nothing to follow
            self.ended, self.matcher, self.broken = True, None, False
            return True
        if self.no_call is not None:
            self.no_call.consume_token(token)
            if self.no_call.is_error():  # a token the mask allowed cannot fail; if it did, stop constraining
                self.no_call = None
            if self.must_state and not self.stated:
                self.stated = states_figures(self.tokenizer.decode(self.generated, skip_special_tokens=True),
                                             self.must_state)
            return True
        if self.matcher is not None:
            self.matcher.consume_token(token)
            if self.matcher.is_error() or self.matcher.is_accepting():
                self.matcher, self.free_ids = None, []
            return True
        self.free_ids.append(token)
        if self.grammar is None:
            return True
        text = self.tokenizer.decode(self.free_ids, skip_special_tokens=False)
        if self.broken:
            if TOOL_CALL_CLOSE in text:
                self.broken, self.free_ids = False, []
            return True
        start = text.find(TOOL_CALL_OPEN)
        if start < 0:
            return True
        rest = text[start + len(TOOL_CALL_OPEN):]  # what the token that closed the tag wrote after it
        matcher = llguidance.LLMatcher(self.ll, self.grammar, log_level=0)  # a rejected token is handled here
        for rest_id in (self.tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else []):
            matcher.consume_token(rest_id)
        if matcher.is_error():
            self.broken, self.free_ids = True, []
            return True
        self.matcher, self.free_ids = matcher, []
        return True

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary (llguidance's): `allowed` returning None allows these tokens, no others."""
        return self.ll.vocab_size


class ToolCallLogitsProcessor:
    """A transformers logits processor: the answer's penalties outside call blocks, the call grammar inside
    (one `LazyCall` per row)."""

    def __init__(self, tokenizer: Any, tools: list[list[dict[str, Any]] | None], prompt_width: int,
                 stop_ids: Iterable[int], policy: Any,
                 conversations: list[list[dict[str, Any]] | None] | None = None):
        """`conversations`: per row, the messages its prompt renders (the rules of `call_rules`); None: every
        offered tool is callable with any values its schema allows."""
        self.tokenizer, self.prompt_width, self.policy = tokenizer, prompt_width, policy
        self.stop_ids = frozenset(stop_ids)
        ll = ll_tokenizer(tokenizer, self.stop_ids)
        figures = getattr(policy, "tool_figures", True)
        result_figure = getattr(policy, "tool_result_figure", False)
        said_required = getattr(policy, "tool_said_required", True)
        self.rows = [LazyCall(tokenizer, ll, row_tools, messages, self.stop_ids, figures=figures,
                              result_figure=result_figure, said_required=said_required)
                     for row_tools, messages in zip(tools, conversations or [None] * len(tools))]

    def in_block(self, row: int) -> bool:
        return self.rows[row].in_block

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        from lawtune.modeling.decoding import penalize

        out = []
        for index in range(scores.shape[0]):
            generated = input_ids[index, self.prompt_width:].tolist()
            state = self.rows[index]
            for token in generated[len(state.generated):]:
                state.consume_token(token)
            logits = scores[index]
            if not state.in_block and self.policy is not None and self.policy.penalizes:
                logits = penalize(logits, state.penalized(generated), self.policy, self.stop_ids)
            allowed = state.allowed(logits.shape[-1], logits.device)
            if allowed is not None:
                logits = logits.float().masked_fill(~allowed, float("-inf"))
            out.append(logits.to(scores.dtype))
        return torch.stack(out)


def _in_number(tail: str) -> bool:
    """Whether text ending in `tail` ends inside a number: a digit last, or a digit then `.` or `,`."""
    return bool(re.search(f"[{DIGITS}][.,]?$", tail))


def _mask(matcher: Any, vocab: int, device: Any) -> Any:
    """The tokens the matcher allows next, as a bool tensor over `vocab` logits on `device`."""
    allowed = grammar_mask(matcher, vocab)
    return allowed if device is None else allowed.to(device)
