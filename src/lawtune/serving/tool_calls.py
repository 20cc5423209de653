"""OpenAI tool calls on a local engine: the grammar of forced calls, the model's text turned into calls, and
those calls in the response (`ToolChatShape`, the chat shape of protocol.py for a request that offered tools).

    plan = plan_tools(body, agent, upstream=False)             # what a request's tools fields mean here
    grammar = tool_grammar(tools, "required", parallel=True)   # llguidance Lark: <tool_call> blocks only
    stream = CallStream(parallel=True)
    for piece in stream.push(text) + stream.finish(): ...     # Content("…") / Call(id, name, arguments) / Problem

The model writes calls as Hermes / Qwen-2.5 text (`<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>`,
docs/tools.md, parsed by `lawtune.modeling.tool_format.parse_tool_calls`). `CallStream` reads that text as it is
generated: text that may be the start of `<tool_call>` is held back, a block is held until it closes and then
becomes a call (or a problem, never content), and everything else is content. Both the streamed and the whole
response read the text through it, so they agree.

`tool_choice` "required" or a named function decodes under `tool_grammar`: the answer is one or more
blocks whose JSON names a given tool and whose arguments follow its parameter schema (with no keys beyond
it, as OpenAI's strict mode), so the call always parses (unless max_tokens cuts it: finish_reason "length").
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from lawtune.modeling.tool_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, parse_tool_calls
from lawtune.serving.engines import Finished, GenerationEvent, GenerationRequest, TextDelta
from lawtune.serving.protocol import ChatShape, api_finish

MAX_FORCED_CALLS = 4  # "required" with parallel calls: a random model may not loop on blocks forever


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class Content:
    text: str


@dataclass
class Call:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=new_call_id)

    def openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}


@dataclass
class Problem:
    message: str  # a block that did not parse, or a call dropped by parallel_tool_calls: false


Piece = Content | Call | Problem


class CallStream:
    """The model's text → content, calls and problems, as it arrives (one per choice)."""

    def __init__(self, parallel: bool = True, names: list[str] | None = None):
        self.parallel = parallel
        self.names = names  # the tools offered: a call of another name is a problem
        self.pending = ""  # held back: a possible `<tool_call>` prefix, or an open block
        self.in_block = False
        self.calls: list[Call] = []
        self.problems: list[str] = []
        self.content = ""
        self.blocks = 0

    def push(self, text: str) -> list[Piece]:
        self.pending += text
        pieces: list[Piece] = []
        while True:
            if self.in_block:
                end = self.pending.find(TOOL_CALL_CLOSE)
                if end < 0:
                    return pieces
                block = TOOL_CALL_OPEN + self.pending[:end + len(TOOL_CALL_CLOSE)]
                self.pending, self.in_block = self.pending[end + len(TOOL_CALL_CLOSE):], False
                pieces += self._block(block)
                continue
            start = self.pending.find(TOOL_CALL_OPEN)
            if start >= 0:
                pieces += self._content(self.pending[:start])
                self.pending, self.in_block = self.pending[start + len(TOOL_CALL_OPEN):], True
                continue
            keep = _partial_open(self.pending)
            pieces += self._content(self.pending[:len(self.pending) - keep])
            self.pending = self.pending[len(self.pending) - keep:]
            return pieces

    def finish(self) -> list[Piece]:
        """The end of the answer: an open block is a problem; held-back text is content after all."""
        if self.in_block:
            self.in_block, rest = False, self.pending
            self.pending = ""
            return [self._problem(f"a {TOOL_CALL_OPEN} block was not closed before the answer ended: "
                                  f"{_short(TOOL_CALL_OPEN + rest)}")]
        rest, self.pending = self.pending, ""
        return self._content(rest)

    def _content(self, text: str) -> list[Piece]:
        if self.calls or self.problems:  # between and after blocks: only the separating whitespace is expected
            text = text if text.strip() else ""
        if not text:
            return []
        self.content += text
        return [Content(text)]

    def _block(self, block: str) -> list[Piece]:
        self.blocks += 1
        turn = parse_tool_calls(block)  # one block: its errors say "tool call 1"; say which block it was
        pieces: list[Piece] = [self._problem(error.replace("tool call 1:", f"tool call {self.blocks}:", 1))
                               for error in turn.errors]
        for parsed in turn.calls:
            if self.names is not None and parsed.name not in self.names:
                pieces.append(self._problem(f"the model called {parsed.name!r}, which is not one of the tools "
                                            f"({', '.join(self.names)})"))
            elif not _finite(parsed.arguments):
                pieces.append(self._problem(f"the arguments of {parsed.name} hold a number JSON cannot carry "
                                            f"(out of range): {_short(block)}"))
            elif self.calls and not self.parallel:
                pieces.append(self._problem(f"parallel_tool_calls is false: a second call ({parsed.name}) was dropped"))
            else:
                call = Call(parsed.name, dict(parsed.arguments))
                self.calls.append(call)
                pieces.append(call)
        if not turn.calls and not turn.errors:
            pieces.append(self._problem(f"an empty tool call: {_short(block)}"))
        return pieces

    def _problem(self, message: str) -> Problem:
        self.problems.append(message)
        return Problem(message)


def _finite(arguments: dict[str, Any]) -> bool:
    try:
        json.dumps(arguments, allow_nan=False)
        return True
    except ValueError:  # 1e999 parses as inf, which no JSON can say
        return False


def _partial_open(text: str) -> int:
    """How many characters at the end of `text` could begin `<tool_call>` (held back until the next piece)."""
    for size in range(min(len(text), len(TOOL_CALL_OPEN) - 1), 0, -1):
        if TOOL_CALL_OPEN.startswith(text[-size:]):
            return size
    return 0


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# ---- forced calls ---------------------------------------------------------------------------------------


def tool_grammar(tools: list[dict[str, Any]], choice: str, parallel: bool) -> str:
    """The llguidance Lark grammar of an answer that is only tool calls: of `choice` (a tool's name: exactly
    one call of it) or of any of `tools` ("required": one, or up to MAX_FORCED_CALLS with parallel calls)."""
    functions = [tool["function"] for tool in tools]
    if choice != "required":
        functions = [f for f in functions if f["name"] == choice]
    alternatives = " | ".join(f"%json {json.dumps(_call_schema(f), ensure_ascii=False)}" for f in functions)
    call = f'call: "{TOOL_CALL_OPEN}\\n" ({alternatives}) "\\n{TOOL_CALL_CLOSE}"'
    repeat = MAX_FORCED_CALLS - 1 if parallel and choice == "required" else 0
    start = "call"
    for _ in range(repeat):  # call ("\n" call ("\n" call)?)?: at most MAX_FORCED_CALLS blocks
        start = f'call ("\\n" {start})?'
    return f"start: {start}\n{call}\n"


def checked_grammar(grammar: str) -> str:
    """The grammar, or a 400 naming `tools` when llguidance cannot compile a tool's parameter schema — said
    before the request reaches an engine (whose failures the circuit breaker counts)."""
    import llguidance

    from lawtune.serving.errors import ApiError

    try:
        failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            llguidance.LLMatcher.grammar_from_lark(grammar))
    except (ValueError, TypeError, RuntimeError) as error:
        failed, messages = True, [str(error)]
    if failed:
        raise ApiError(400, f"tools: a parameter schema cannot be used for constrained decoding (tool_choice "
                       f"required / named): {' '.join(messages)[:300]}", param="tools", code="invalid_value")
    return grammar


def _call_schema(function: dict[str, Any]) -> dict[str, Any]:
    """`{"name": NAME, "arguments": {…}}` with the function's parameter schema, in json.dumps's layout: the same
    schema the lazy grammar of `tool_choice: auto` uses in eval and infer (lawtune.tools.constrain)."""
    from lawtune.tools.constrain import call_schema

    return call_schema(function)


# ---- a request's tools ----------------------------------------------------------------------------------


@dataclass
class ToolPlan:
    """What a chat request's tool fields mean for this server (`plan_tools`)."""

    mode: str  # "none", "auto", "required" or the one function's name
    tools: list[dict[str, Any]] | None  # OpenAI definitions rendered into the prompt (None: no tools)
    parallel: bool = True
    parses: bool = False  # read the model's text as calls (a local engine; an upstream parses its own)
    reads_calls: bool = False  # the response may hold tool calls (the client offered tools)
    agent: Any = None  # lawtune.tools.agent.Agent: server-side tools run in the loop
    passthrough: dict[str, Any] = field(default_factory=dict)  # for an upstream, as the client sent them

    def call_stream(self) -> CallStream:
        return CallStream(self.parallel, [tool["function"]["name"] for tool in self.tools or []])

    def apply(self, generation: Any) -> None:
        """Set a GenerationRequest's grammar (forced calls on a local engine) or upstream fields."""
        generation.passthrough.update(self.passthrough)
        if (self.parses or self.agent is not None) and self.mode not in ("none", "auto"):
            generation.grammar = checked_grammar(tool_grammar(self.tools or [], self.mode, self.parallel))
        # auto: the lazy call grammar with the conversation's rules, on a local engine (an upstream has its own)
        generation.tool_rules = (self.parses or self.agent is not None) and self.mode == "auto"


def plan_tools(body: Any, agent: Any, upstream: bool) -> ToolPlan:
    """The ToolPlan of a ChatCompletionRequest; `agent`: the server's `--tools builtin` loop (or None).

    Server-side tools run only when the request brings no tools of its own and does not say tool_choice
    "none"; they answer one choice at a time (n > 1 → 400)."""
    from lawtune.serving.errors import ApiError

    mode, parallel = body.tool_mode(), body.parallel_tool_calls is not False
    passthrough = body.model_dump(include={"tools", "tool_choice", "parallel_tool_calls"}, exclude_none=True,
                                  by_alias=True) if upstream else {}
    if body.tools:
        tools = [tool.openai() for tool in body.tools] if mode != "none" else None
        return ToolPlan(mode, tools, parallel, parses=not upstream and tools is not None, reads_calls=True,
                        passthrough=passthrough)
    if agent is not None and body.tool_choice != "none":
        mode = "auto" if body.tool_choice is None else mode  # the request's own default is "none" (no tools)
        names = [tool.name for tool in agent.tools]
        if mode not in ("auto", "required") and mode not in names:
            raise ApiError(400, f"tool_choice names {mode!r}, which is neither in `tools` nor one of the server's "
                           f"tools ({', '.join(names)})", param="tool_choice", code="invalid_value")
        if (body.n or 1) > 1:
            raise ApiError(400, "n > 1 is not supported with the server's built-in tools (lawtune serve --tools): "
                           "ask for one choice, or send tool_choice \"none\"", param="n", code="unsupported_parameter")
        # a forced choice (required / named) forces the first round; the model answers freely after the results
        return ToolPlan(mode, agent.definitions(), parallel, agent=agent)
    if mode != "none" and not upstream:
        raise ApiError(400, f"tool_choice {body.tool_choice if isinstance(body.tool_choice, str) else mode!r} needs "
                       "`tools` (this server has no tools of its own: lawtune serve --tools builtin)",
                       param="tool_choice", code="invalid_value")
    return ToolPlan("none", None, parallel, passthrough=passthrough)


def server_agent(settings: Any, rag: Any) -> Any:
    """`lawtune serve --tools builtin`: the agent over the built-in tools (+ the KB's lookup tools with --kb)."""
    if settings.tools != "builtin":
        return None
    from lawtune.tools import builtin_tools
    from lawtune.tools.agent import Agent

    return Agent(builtin_tools(kb=rag.retriever if rag is not None else None), max_rounds=settings.tool_rounds,
                 timeout=settings.tool_timeout_s)


def merge_call_deltas(calls: list[dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
    """Assemble streamed tool-call deltas (an upstream's) into whole calls, as the openai SDK does."""
    for delta in deltas:
        index = int(delta.get("index") or 0)
        while len(calls) <= index:
            calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call, function = calls[index], delta.get("function") or {}
        call["id"] = delta.get("id") or call["id"]
        call["type"] = delta.get("type") or call["type"]
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""


class ToolChatShape(ChatShape):
    """A chat completion with `tools`: the model's text read as content and tool calls (`CallStream`:
    `message.tool_calls`, finish_reason "tool_calls", streamed as the SDK assembles them: the call's index, id,
    type and name first, then its arguments), or an upstream's own tool-call deltas relayed. Blocks that do not
    parse are never content: `lawtune.tool_call_errors` reports them."""

    def __init__(self, generation: GenerationRequest, extend: Callable[[str], dict] | None,
                 plan: ToolPlan):
        super().__init__(generation, extend)
        self.plan = plan
        self.streams = [plan.call_stream() for _ in range(generation.n)]
        self.relayed: list[list[dict[str, Any]]] = [[] for _ in range(generation.n)]  # an upstream's calls

    def opening(self) -> list[dict[str, Any]]:
        # content null, as OpenAI opens an answer that may be only calls (the SDK then reports no content)
        return [self.envelope([{"index": i, "delta": {"role": "assistant", "content": None}, "finish_reason": None,
                                "logprobs": None}], whole=False) for i in range(self.generation.n)]

    def add(self, event: GenerationEvent) -> None:
        super().add(event)
        if isinstance(event, TextDelta) and event.tool_calls:  # an upstream's: assembled for the whole response
            merge_call_deltas(self.relayed[event.index], event.tool_calls)

    def _chunk(self, index: int, delta: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
        return self.envelope([{"index": index, "delta": delta, "finish_reason": None, "logprobs": logprobs}],
                             whole=False)

    def _pieces(self, index: int, pieces: list[Any]) -> list[dict[str, Any]]:
        chunks, stream = [], self.streams[index]
        for piece in pieces:
            if isinstance(piece, Content):
                chunks.append(self._chunk(index, {"content": piece.text}))
            elif isinstance(piece, Call):
                call = piece.openai()
                at = stream.calls.index(piece)
                chunks.append(self._chunk(index, {"tool_calls": [{"index": at, "id": call["id"], "type": "function",
                                                                   "function": {"name": call["function"]["name"],
                                                                                "arguments": ""}}]}))
                chunks.append(self._chunk(index, {"tool_calls": [{"index": at, "function": {
                    "arguments": call["function"]["arguments"]}}]}))
        return chunks

    def chunks(self, event: GenerationEvent) -> list[dict[str, Any]]:
        self.add(event)
        index = event.index
        if isinstance(event, TextDelta):
            out = []
            if event.tool_calls:  # an upstream parsed them: relay as sent
                out.append(self._chunk(index, {"tool_calls": event.tool_calls}))
            if self.plan.parses:
                out += self._pieces(index, self.streams[index].push(event.text))
            elif event.text:
                out.append(self._chunk(index, {"content": event.text}))
            if event.logprobs:
                logprobs = self._logprobs(event.logprobs)
                if out:
                    out[0]["choices"][0]["logprobs"] = logprobs
                else:
                    out.append(self._chunk(index, {"content": ""}, logprobs))
            return out
        out = self._pieces(index, self.streams[index].finish()) if self.plan.parses else []
        finish, stop_reason = self._finish(index, event)
        last = self.envelope([{"index": index, "delta": {}, "finish_reason": finish, "stop_reason": stop_reason,
                               "logprobs": self._logprobs(event.logprobs) if event.logprobs else None}], whole=False)
        if self.done() and (field := self.lawtune_field(self.streams[0].content)):
            last["lawtune"] = field
        return out + [last]

    def _finish(self, index: int, event: Finished) -> tuple[str, str | None]:
        if self.streams[index].calls:
            return "tool_calls", None
        return api_finish(event)

    def lawtune_field(self, text: str) -> dict[str, Any] | None:
        field = super().lawtune_field(text) or {}
        errors = [{"index": index, "error": problem} for index, stream in enumerate(self.streams)
                  for problem in stream.problems]
        if errors:
            field["tool_call_errors"] = errors
        return field or None

    def whole(self) -> dict[str, Any]:
        if self.plan.parses:  # the same reading as the streamed answer's
            for index, stream in enumerate(self.streams):
                stream.push(self.texts[index])
                stream.finish()
        body = super().whole()
        for choice in body["choices"]:
            index = choice["index"]
            stream = self.streams[index]
            calls = [call.openai() for call in stream.calls] if self.plan.parses else self.relayed[index]
            content = stream.content if self.plan.parses else self.texts[index]
            choice["message"]["content"] = content if content.strip() or not calls else None
            if calls:
                choice["message"]["tool_calls"] = calls
                choice["finish_reason"], choice["stop_reason"] = self._finish(index, self.finished[index])
        if field := self.lawtune_field(self.streams[0].content if self.plan.parses else self.texts[0]):
            body["lawtune"] = field
        return body
