"""The OpenAI-compatible API, both ways: what a request may say and how it becomes the engine's input; how the
engine's events become the response (chat completions, completions, models). Sections, in order: the request
schemas (with their conversion, `to_generation`), the response schemas, the responses rendered (JSON or SSE
framing, then the shapes).

The limits live here (`Field(ge=…, le=…)`, `Literal[…]`, strict types), so a bad request is rejected by
validation with a 400 naming the field, before any handler code runs. Every field is either honoured or
refused — never silently ignored (docs/serving.md, "Conformance"):
- an unknown field → 400 `unsupported_parameter` naming it (`extra="forbid"`);
- a known OpenAI field lawtune cannot honour (`functions`, `audio`, `prediction`, ...) is accepted only when it
  is null or empty (what clients send when they don't use it), else 400 `unsupported_parameter`;
- every optional field may be `null`, meaning "the default", as the OpenAI spec allows.

Tools: `tools`, `tool_choice`, `parallel_tool_calls`, assistant `tool_calls` and `tool` messages are accepted
here and checked against each other (a named choice names an offered tool, a tool message answers an earlier
call); what they do is lawtune.serving.tool_calls's (docs/serving.md "Tools").

Requests turn themselves into the engine's input (vLLM's `to_sampling_params`): `token_estimate` is what the
gateway charges before any work is done, `to_generation(prompt, ...)` checks the tokenized prompt fits the
context, fixes max_tokens and returns the `engines.GenerationRequest`.

    generation = body.to_generation(prompt, model=model, context_length=engine.context_length(model),
                                    default_max_tokens=settings.default_max_tokens, request_id=request_id)

Repetition control: `frequency_penalty` and `presence_penalty` (OpenAI's meaning) and `repetition_penalty`
(vLLM's extension, HF-style) apply to the answer's own tokens only; left out, the server's defaults apply
(`lawtune serve --repetition-penalty …`). An answer ended by the repetition stop has finish_reason "stop"
(OpenAI's values) and `stop_reason: "repetition"` on its choice (vLLM's field; null otherwise).

Responses go the other way, here too (vLLM keeps its response classes beside `to_sampling_params` the same
way): the engine's events rendered as OpenAI's chat completion or (text) completion — one JSON body, or
server-sent events in OpenAI's chunk format. So a reader follows a request from the route into this module,
through the gateway to the engine, and back into this module (docs/architecture.md, "A chat request").

    shape = ChatShape(generation)              # CompletionShape for /v1/completions (tool_calls.ToolChatShape: tools)
    return await respond(shape, events, ticket, include_usage=False, keepalive_s=15, headers=limits)

A shape collects the events of the request's n choices and says what a choice, a chunk and the whole answer
look like; `respond` picks JSON or SSE by `generation.stream`. Streams are framed by sse-starlette, with a
`: ping` comment every `keepalive_s` while the request waits for a slot and until it ends, and always end with
`data: [DONE]` — after an error too, which arrives as a `data: {"error": …}` event once headers are sent. A
stream that holds a slot waits for its first event before answering, so its early errors keep their status.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from typing import Annotated, Any, AsyncIterator, Callable, ClassVar, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from sse_starlette import EventSourceResponse

from lawtune.serving.engines import (Finished, GenerationEvent, GenerationRequest, Prompt, TextDelta,
                                     TokenLogprob)
from lawtune.serving.errors import NO_RETRY, ApiError

MAX_TOKENS_LIMIT = 32768  # schema bound; the real bound is the model's context minus the prompt
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 512  # per stop string: a stream holds back up to this many characters while a stop may be starting
MAX_TOKEN_ID = 2**31 - 1  # schema bound; the engine bounds prompt ids by its model's vocabulary (400 past it)
TOKEN_ID_KEY = re.compile(r"[0-9]{1,10}")  # ASCII digits only: "²".isdigit() is True, int("²") fails
MAX_CHOICES = 8  # n: choices are generated side by side in the batch
MAX_TOP_LOGPROBS = 20
SEED_RANGE = dict(ge=-(2**63), le=2**63 - 1)
log = logging.getLogger("lawtune.serving")


# -- requests -------------------------------------------------------------------------------------------


def unsupported(what: str, why: str) -> PydanticCustomError:
    """A 400 `unsupported_parameter` (errors.validation_error maps the error type to the code)."""
    return PydanticCustomError("unsupported", "{what} is not supported by this server: {why}", {"what": what, "why": why})


class _Strict(BaseModel):
    # strict: "5" is not an int and 1 is not a bool — wrong types are the client's bug, say so;
    # forbid: a field this server does not know is refused, not ignored
    model_config = ConfigDict(strict=True, extra="forbid")


def _refuse_unless_empty(value: Any, info: Any, why: str) -> Any:
    if value not in (None, [], {}, ""):
        raise unsupported(info.field_name, why)
    return value


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class FunctionCallIn(_Strict):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(max_length=100_000, description="a JSON object, as a string (what the API returned)")
    parsed_arguments: Any = None  # the SDK's own field on a message it assembled (ignored)

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value or "{}")
        except ValueError as error:
            raise ValueError(f"arguments must be a JSON object as a string: {error}") from None
        if not isinstance(parsed, dict):
            raise ValueError("arguments must be a JSON object as a string, e.g. '{\"months\": 3}'")
        return value


class ToolCallIn(_Strict):
    """A tool call on an assistant message the client sends back (what the API returned in `tool_calls`)."""

    id: str = Field(min_length=1, max_length=128)
    type: Literal["function"] = "function"
    function: FunctionCallIn
    index: int | None = None  # on a call the SDK assembled from a stream (ignored)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type,
                "function": {"name": self.function.name, "arguments": self.function.arguments}}


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    # null only on an assistant message with tool_calls (checked below)
    content: str | list[TextPart] | None = Field(None, max_length=200_000)
    name: str | None = None  # a tool message's function name (optional); refused on other roles
    tool_calls: list[ToolCallIn] | None = Field(None, max_length=64)
    tool_call_id: str | None = Field(None, max_length=128)
    # what the SDK puts on an assistant message a client appends back to the conversation: accepted empty
    function_call: Any = None
    refusal: str | None = None
    audio: Any = None
    annotations: list[Any] | None = None

    @field_validator("function_call", "refusal", "audio", "annotations")
    @classmethod
    def _no_tools_or_names(cls, value: Any, info: Any) -> Any:
        return _refuse_unless_empty(value, info, "the chat template has no place for it (tool calls go in "
                                    "`tool_calls`); leave it out or null")

    @field_validator("name", "tool_calls")
    @classmethod
    def _only_on_their_role(cls, value: Any, info: Any) -> Any:
        role = info.data.get("role")  # validated first: it is declared first
        if info.field_name == "name" and value and role != "tool":
            raise unsupported("name", "the chat template has no speaker names (only a tool message's function "
                              "name); leave it out or null")
        if info.field_name == "tool_calls" and value and role != "assistant":
            raise unsupported("tool_calls", "tool calls belong on assistant messages")
        return value

    @model_validator(mode="after")
    def _fields_of_the_role(self) -> "ChatMessage":
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise PydanticCustomError("missing", "content is required (only an assistant message with tool_calls "
                                      "may leave it out)")
        if self.role == "tool" and not self.tool_call_id:
            raise PydanticCustomError("missing", "a tool message needs the tool_call_id of the call it answers")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)

    def as_dict(self) -> dict[str, Any]:
        role = "system" if self.role == "developer" else self.role  # OpenAI's newer name for system
        message: dict[str, Any] = {"role": role, "content": self.text()}
        if self.tool_calls:
            message["tool_calls"] = [call.as_dict() for call in self.tool_calls]
        if self.role == "tool":
            message["tool_call_id"] = self.tool_call_id
            if self.name:
                message["name"] = self.name
        return message


class FunctionDef(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(None, max_length=10_000)
    parameters: dict[str, Any] | None = None  # a JSON Schema object; null: no arguments
    strict: bool | None = None  # lawtune's required / named calls are always grammar-constrained

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "object") != "object":
            raise ValueError(f'parameters must be a JSON Schema of an object ({{"type": "object", "properties": '
                             f'{{...}}}}): arguments are a JSON object; got type {value.get("type")!r}')
        return value


class ToolDef(_Strict):
    type: Literal["function"]
    function: FunctionDef

    def openai(self) -> dict[str, Any]:
        function = {"name": self.function.name, "description": self.function.description or "",
                    "parameters": self.function.parameters or {"type": "object", "properties": {}}}
        return {"type": "function", "function": function}


class NamedFunction(_Strict):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Strict):
    include_usage: bool | None = None


class JsonSchemaFormat(_Strict):
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError('type "json_schema" needs a `json_schema` object ({"name": ..., "schema": {...}})')
        if self.type == "json_schema" and self.json_schema.schema_:
            # checked here for every engine: an upstream (vLLM) would otherwise compile whatever a client sent
            # (a schema it chokes on is a 5xx, which would count against the breaker)
            import llguidance

            try:
                grammar = llguidance.LLMatcher.grammar_from_json_schema(self.json_schema.schema_)
                problem = llguidance.LLMatcher.validate_grammar(grammar)
            except (ValueError, TypeError, RuntimeError) as error:
                problem = str(error)
            if problem:
                raise ValueError(f"the JSON schema cannot be used for constrained decoding: {problem[:300]}")
        return self

    def target_schema(self) -> dict[str, Any] | None:
        """The JSON schema answers must follow (None: free text)."""
        if self.type == "json_object":
            return {"type": "object"}
        if self.type == "json_schema":
            return (self.json_schema.schema_ if self.json_schema and self.json_schema.schema_ else {"type": "object"})
        return None


StopString = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
StopStrings = Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)]
Penalty = Annotated[float | None, Field(ge=-2.0, le=2.0)]


def _lone_surrogate(value: Any) -> str | None:
    """The path of the first string holding a lone UTF-16 surrogate ("\\ud800" is valid JSON but no text:
    every tokenizer fails on it), or None. Iterative: a deeply nested body cannot exhaust the stack."""
    stack: list[tuple[tuple, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return ".".join(map(str, path)) or "body"
        elif isinstance(item, dict):
            stack.extend(((*path, key), key) for key in item)
            stack.extend(((*path, key), sub) for key, sub in item.items())
        elif isinstance(item, list):
            stack.extend(((*path, index), sub) for index, sub in enumerate(item))
    return None


class _Sampling(_Strict):
    """The fields chat completions and completions share, and their conversion to the engine's request."""

    prompt_param: ClassVar[str]  # the field that holds the prompt, named by a 400 about its length

    @model_validator(mode="before")
    @classmethod
    def _text_is_unicode(cls, data: Any) -> Any:
        where = _lone_surrogate(data)
        if where is not None:
            raise PydanticCustomError(f"param:{where}", "{where} holds a lone UTF-16 surrogate (e.g. \\ud800), which "
                                      "is not text; send valid Unicode", {"where": where})
        return data

    model: str | None = Field(None, description="a served model id or alias (GET /v1/models); default: the first")
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 = greedy; null = 1")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="vLLM's extension; 0 or -1 = off")
    min_p: float | None = Field(None, ge=0.0, le=1.0, description="vLLM's extension; 0 = off")
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: StopString | StopStrings | None = None
    seed: int | None = Field(None, **SEED_RANGE)
    user: str | None = Field(None, max_length=256, description="recorded in the request's log line")
    # None: the server's default policy (docs/serving.md "Decoding")
    frequency_penalty: Penalty = None
    presence_penalty: Penalty = None
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0, description="vLLM's extension; 1 = off")
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = Field(None, max_length=1024)
    response_format: ResponseFormat | None = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key in value or {}:
            if not TOKEN_ID_KEY.fullmatch(key):
                raise ValueError(f"keys are token ids (\"1234\"), got {key!r}")
        return value

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def bias(self) -> dict[int, float]:
        return {int(key): value for key, value in (self.logit_bias or {}).items()}

    # -- to the engine (subclasses say how long the prompt is, how many tokens and logprobs are asked) --------

    def requested_max_tokens(self) -> int | None:
        raise NotImplementedError

    def logprob_count(self) -> int | None:
        raise NotImplementedError

    def prompt_chars(self) -> int:
        raise NotImplementedError

    def token_estimate(self, context_length: int | None, default_max_tokens: int) -> int:
        """What the request may cost before it is tokenized, for the up-front charge: about one token per
        character of the prompt (at most the context) + max_tokens × n. The gateway corrects it to the exact
        count once the engine has tokenized the prompt."""
        prompt = self.prompt_chars()
        if context_length is not None:
            prompt = min(prompt, context_length)
        return prompt + (self.requested_max_tokens() or default_max_tokens) * (self.n or 1)

    def to_generation(self, prompt: Prompt, *, model: str, context_length: int | None, default_max_tokens: int,
                      request_id: str = "") -> GenerationRequest:
        """The engine's request for this one: the prompt must be non-empty and fit the context with max_tokens
        (400 `context_length_exceeded` otherwise); left out, max_tokens is the server's default cut to what fits."""
        param = self.prompt_param
        if prompt.tokens == 0:  # nothing to prefill: the engine would fail on it (and count it against the breaker)
            raise ApiError(400, f"the {param} is empty once tokenized; send some text", param=param,
                           code="invalid_value")
        requested = self.requested_max_tokens()
        if context_length is not None:
            room = context_length - prompt.tokens
            wanted = requested if requested is not None else 1
            if wanted > room:
                raise ApiError(
                    400,
                    f"This model's maximum context length is {context_length} tokens. However, you requested "
                    f"{prompt.tokens + wanted} tokens ({prompt.tokens} in the {param}, {wanted} in the completion). "
                    f"Please reduce the length of the {param} or completion by "
                    f"{prompt.tokens + wanted - context_length} tokens.",
                    param=param, code="context_length_exceeded", headers=NO_RETRY)
            max_tokens = requested if requested is not None else min(default_max_tokens, room)
        else:
            max_tokens = requested if requested is not None else default_max_tokens
        passthrough: dict[str, Any] = {}
        if self.response_format is not None:  # an upstream gets it as the client sent it
            passthrough["response_format"] = self.response_format.model_dump(by_alias=True, exclude_none=True)
        if self.user:
            passthrough["user"] = self.user
        return GenerationRequest(
            prompt=prompt, model=model, max_tokens=max_tokens, n=self.n or 1,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p, top_k=max(self.top_k or 0, 0), min_p=self.min_p or 0.0,
            seed=self.seed, logit_bias=self.bias(), stop=self.stop_list(), logprobs=self.logprob_count(),
            json_schema=self.response_format.target_schema() if self.response_format else None,
            request_id=request_id, repetition_penalty=self.repetition_penalty,
            frequency_penalty=self.frequency_penalty, presence_penalty=self.presence_penalty,
            stream=bool(self.stream), passthrough=passthrough)


class ChatCompletionRequest(_Sampling):
    prompt_param: ClassVar[str] = "messages"

    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    # tools (lawtune.serving.tool_calls): the Hermes-style <tool_call> text of the model, parsed into tool_calls
    tools: list[ToolDef] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # honoured as what they mean here: nothing is stored, one service tier
    functions: list[Any] | None = None
    function_call: Literal["none"] | None = None
    store: Literal[False] | None = None
    metadata: dict[str, str] | None = None
    service_tier: Literal["auto", "default"] | None = None
    modalities: list[Literal["text"]] | None = None
    # refused unless null
    audio: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None

    @field_validator("functions")
    @classmethod
    def _no_functions(cls, value: Any, info: Any) -> Any:
        return _refuse_unless_empty(value, info, "the deprecated `functions` API is not served; send `tools`")

    @field_validator("metadata")
    @classmethod
    def _no_metadata(cls, value: Any, info: Any) -> Any:
        return _refuse_unless_empty(value, info, "metadata tags stored completions and nothing is stored (store: false)")

    @field_validator("audio", "prediction", "reasoning_effort", "web_search_options")
    @classmethod
    def _refused(cls, value: Any, info: Any) -> Any:
        return _refuse_unless_empty(value, info, "the model has no such capability; leave it out or null")

    @model_validator(mode="after")
    def _top_logprobs_needs_logprobs(self) -> "ChatCompletionRequest":
        if self.top_logprobs and not self.logprobs:
            raise PydanticCustomError("param:top_logprobs", "top_logprobs needs logprobs: true")
        return self

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self) -> "ChatCompletionRequest":
        names = [tool.function.name for tool in self.tools or []]
        choice = self.tool_choice
        # without `tools`, a named / required choice may mean the server's own tools (serve --tools; the app checks)
        if isinstance(choice, NamedToolChoice) and names and choice.function.name not in names:
            raise PydanticCustomError("param:tool_choice", "tool_choice names {name!r}, which is not in `tools` "
                                      "({names})", {"name": choice.function.name, "names": ", ".join(names)})
        if len(set(names)) != len(names):
            raise PydanticCustomError("param:tools", "two tools have the same name")
        called = {call.id: call.function.name for m in self.messages for call in m.tool_calls or []}
        for index, message in enumerate(self.messages):
            if message.role == "tool" and message.tool_call_id not in called:
                raise PydanticCustomError(f"param:messages[{index}].tool_call_id",
                                          "tool_call_id {id!r} answers no tool call of an earlier assistant message",
                                          {"id": message.tool_call_id})
        return self

    def tool_mode(self) -> str:
        """"none", "auto", "required" or the name of the one function to call (default: auto with tools)."""
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function.name
        return self.tool_choice or ("auto" if self.tools else "none")

    def message_dicts(self) -> list[dict[str, Any]]:
        """The messages as the chat template takes them; a tool message gets the name of the call it answers."""
        called = {call.id: call.function.name for m in self.messages for call in m.tool_calls or []}
        messages = [m.as_dict() for m in self.messages]
        for message in messages:
            if message["role"] == "tool":
                message.setdefault("name", called.get(message["tool_call_id"], ""))
        return messages

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def prompt_chars(self) -> int:
        """Characters the conversation puts in the prompt (content and tool calls)."""
        return sum(len(json.dumps(message, ensure_ascii=False)) for message in self.message_dicts())

    def logprob_count(self) -> int | None:
        """None: no logprobs; k: the sampled token's and the k most likely."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Sampling):
    prompt_param: ClassVar[str] = "prompt"

    prompt: (Annotated[str, Field(max_length=1_000_000)] | Annotated[list[str], Field(min_length=1, max_length=1)]
             | Annotated[list[Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]],
                         Field(min_length=1, max_length=MAX_TOKENS_LIMIT)])
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool | None = None
    best_of: int | None = Field(None, ge=1, le=MAX_CHOICES)
    suffix: str | None = None

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: Any, info: Any) -> Any:
        return _refuse_unless_empty(value, info, "the model has no fill-in-the-middle mode; leave it out or null")

    @model_validator(mode="after")
    def _combinations(self) -> "CompletionRequest":
        if self.best_of is not None and self.best_of != (self.n or 1):
            raise PydanticCustomError("param:best_of", "best_of other than n is not supported (no server-side ranking)")
        if self.echo and self.logprobs is not None:
            raise PydanticCustomError("param:echo", "echo with logprobs (prompt logprobs) is not supported")
        return self

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def logprob_count(self) -> int | None:
        return self.logprobs

    def prompt_chars(self) -> int:
        text = self.prompt_text()
        return len(text) + 2 if text is not None else len(self.prompt_ids() or [])

    def prompt_text(self) -> str | None:
        """The prompt as text (None when the client sent token ids)."""
        if isinstance(self.prompt, str):
            return self.prompt
        return self.prompt[0] if isinstance(self.prompt[0], str) else None

    def prompt_ids(self) -> list[int] | None:
        return list(self.prompt) if self.prompt and isinstance(self.prompt, list) and isinstance(self.prompt[0], int) else None


# -- responses: schemas ----------------------------------------------------------------------------------
# What the shapes below fill (usage, logprobs) and what the KB-only fallback answer builds (serving/kb.py); the
# shapes write the rest of OpenAI's objects as plain dicts of the same fields.


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None = None
    refusal: None = None


class FunctionCallOut(BaseModel):
    name: str
    arguments: str  # a JSON object as a string, as OpenAI sends it


class ToolCallOut(BaseModel):
    id: str  # call_…
    type: Literal["function"] = "function"
    function: FunctionCallOut


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None  # null when the answer is only tool calls
    refusal: None = None
    tool_calls: list[ToolCallOut] | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    stop_reason: str | None = None  # "repetition" when the repetition stop ended the answer (vLLM's field)
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageInfo
    # lawtune's extension with --kb: retrieved articles and citation verdicts (lawtune.serving.kb); omitted otherwise
    lawtune: dict[str, Any] | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    # one call arrives as {index, id, type, function: {name, arguments: ""}} then {index, function: {arguments}}
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None
    stop_reason: str | None = None  # on the last chunk: "repetition" when the repetition stop ended the answer
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None
    lawtune: dict[str, Any] | None = None  # on the chunk that carries finish_reason, with --kb


class CompletionLogprobs(BaseModel):
    tokens: list[str] = []
    token_logprobs: list[float] = []
    top_logprobs: list[dict[str, float]] = []
    text_offset: list[int] = []


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "lawtune"
    root: str | None = None  # vLLM's fields: the weights' folder, the base of an adapter, the context length
    parent: str | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- responses: the engine's events as one JSON body or as SSE chunks ------------------------------------


async def respond(shape: "Shape", events: AsyncIterator[GenerationEvent], ticket: Any, include_usage: bool,
                  keepalive_s: float, headers: dict[str, str]) -> Any:
    """The answer: one JSON body (all events collected), or an SSE stream (`ticket`: the gateway's, whose slot
    a stream may still be waiting for)."""
    if not shape.generation.stream:
        return JSONResponse(await collect(shape, events), headers=headers)
    first = None
    if ticket.has_slot:  # errors before the first token still get their HTTP status
        first = await first_event(events)
    return EventSourceResponse(sse(shape, ticket, first, events, include_usage), ping=keepalive_s, sep="\n",
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers})


async def first_event(events: AsyncIterator[GenerationEvent]) -> GenerationEvent:
    """The first event (closing the iterator, so the slot is freed, when it raises)."""
    try:
        return await anext(events)
    except BaseException:
        await events.aclose()
        raise


async def collect(shape: Shape, events: AsyncIterator[GenerationEvent]) -> dict[str, Any]:
    """Every event into the shape; the whole answer as one JSON body."""
    async with contextlib.aclosing(events):
        async for event in events:
            shape.add(event)
    if not shape.done():
        raise ApiError(503, "the engine ended the answer without finishing it", "service_unavailable",
                       code="engine_error")
    return shape.whole()


async def sse(shape: Shape, ticket: Any, first: GenerationEvent | None, events: AsyncIterator[GenerationEvent],
              include_usage: bool) -> AsyncIterator[dict[str, str]]:
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]` — also after an error, which
    arrives as a `data: {"error": …}` event once the response has started (sse-starlette frames the events
    and sends a `: ping` comment every --sse-keepalive seconds, so a proxy never sees an idle stream)."""
    def data(payload: dict[str, Any]) -> dict[str, str]:
        return {"data": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))}

    async with contextlib.aclosing(events):
        try:
            if not ticket.has_slot:
                await ticket.wait_for_slot()  # keep-alive pings flow meanwhile
            for chunk in shape.opening():
                yield data(chunk)
            pending = [first] if first is not None else []
            async for event in _chain(pending, events):
                for chunk in shape.chunks(event):
                    yield data(chunk)
            if include_usage and shape.done():
                yield data(shape.usage_chunk())
        except ApiError as error:  # headers are sent: report in-band, as OpenAI does
            yield data(error.body())
        except Exception as error:  # a bug: still an envelope and a proper end of stream
            log.exception("request %s failed mid-stream", shape.generation.request_id)
            yield data(ApiError(500, f"internal error ({type(error).__name__}); request id "
                                f"{shape.generation.request_id}", "server_error", code="internal_error").body())
        yield {"data": "[DONE]"}


async def _chain(first: list[GenerationEvent], rest: AsyncIterator[GenerationEvent]) -> AsyncIterator[GenerationEvent]:
    for event in first:
        yield event
    async for event in rest:
        yield event


def api_finish(event: Finished) -> tuple[str, str | None]:
    """The engine's finish reason as the API says it: OpenAI's finish_reason plus vLLM's stop_reason.

    A repetition stop is finish_reason "stop" (clients only know OpenAI's values) with stop_reason
    "repetition", so a client can tell it from an answer the model ended on its own."""
    if event.finish_reason == "repetition":
        return "stop", "repetition"
    return event.finish_reason, None


class Shape:
    """Collects the events of n choices; subclasses say how a choice, a chunk and the whole look."""

    object_whole = object_chunk = prefix = ""

    def __init__(self, generation: GenerationRequest):
        self.generation = generation
        self.id = f"{self.prefix}-{generation.request_id}"
        self.created = int(time.time())
        self.texts = [""] * generation.n
        self.logprobs: list[list[TokenLogprob]] = [[] for _ in range(generation.n)]
        self.finished: dict[int, Finished] = {}

    def add(self, event: GenerationEvent) -> None:
        self.logprobs[event.index].extend(event.logprobs or [])
        if isinstance(event, TextDelta):
            self.texts[event.index] += event.text
        else:
            self.finished[event.index] = event

    def done(self) -> bool:
        return len(self.finished) == self.generation.n

    def usage(self) -> UsageInfo:
        prompt = next(iter(self.finished.values())).usage.prompt_tokens if self.finished else 0
        completion = sum(event.usage.completion_tokens for event in self.finished.values())
        return UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def envelope(self, choices: list[dict[str, Any]], whole: bool) -> dict[str, Any]:
        return {"id": self.id, "object": self.object_whole if whole else self.object_chunk, "created": self.created,
                "model": self.generation.model, "choices": choices}

    def usage_chunk(self) -> dict[str, Any]:
        return {**self.envelope([], whole=False), "usage": self.usage().model_dump()}

    def opening(self) -> list[dict[str, Any]]:
        return []


class ChatShape(Shape):
    object_whole, object_chunk, prefix = "chat.completion", "chat.completion.chunk", "chatcmpl"

    def __init__(self, generation: GenerationRequest, extend: Callable[[str], dict] | None = None):
        super().__init__(generation)
        self.extend = extend  # --kb: the `lawtune` field of the finished answer

    def _logprobs(self, entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
        if self.generation.logprobs is None:
            return None
        content = [TokenLogprobOut(token=e.token, logprob=e.logprob, bytes=e.bytes,
                                   top_logprobs=[TopLogprob(token=t, logprob=v, bytes=b) for t, v, b in e.top])
                   for e in entries or []]
        return ChoiceLogprobs(content=content).model_dump()

    def opening(self) -> list[dict[str, Any]]:
        return [self.envelope([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                                "logprobs": None}], whole=False) for i in range(self.generation.n)]

    def chunks(self, event: GenerationEvent) -> list[dict[str, Any]]:
        self.add(event)
        if isinstance(event, TextDelta):
            if not event.text and not event.logprobs:
                return []
            return [self.envelope([{"index": event.index, "delta": {"content": event.text}, "finish_reason": None,
                                    "logprobs": self._logprobs(event.logprobs)}], whole=False)]
        finish, stop_reason = api_finish(event)
        chunk = self.envelope([{"index": event.index, "delta": {}, "finish_reason": finish, "stop_reason": stop_reason,
                                "logprobs": self._logprobs(event.logprobs) if event.logprobs else None}], whole=False)
        if self.done() and (field := self.lawtune_field(self.texts[0])):
            chunk["lawtune"] = field
        return [chunk]

    def lawtune_field(self, text: str) -> dict[str, Any] | None:
        """The `lawtune` extension: --kb's references and citations, the agent loop's trace (None: neither)."""
        field = dict(self.extend(text)) if self.extend is not None else {}
        for finished in self.finished.values():
            field.update(finished.lawtune or {})
        return field or None

    def whole(self) -> dict[str, Any]:
        choices = []
        for index in range(self.generation.n):
            finish, stop_reason = api_finish(self.finished[index])
            choices.append({"index": index, "message": {"role": "assistant", "content": self.texts[index],
                                                        "refusal": None},
                            "finish_reason": finish, "stop_reason": stop_reason,
                            "logprobs": self._logprobs(self.logprobs[index])})
        body = {**self.envelope(choices, whole=True), "usage": self.usage().model_dump()}
        if field := self.lawtune_field(self.texts[0]):  # without --kb or tools the response is exactly OpenAI's shape
            body["lawtune"] = field
        return body


class CompletionShape(Shape):
    object_whole = object_chunk = "text_completion"
    prefix = "cmpl"

    def __init__(self, generation: GenerationRequest, echo: str | None = None):
        super().__init__(generation)
        self.echo = echo  # the prompt text, put before each answer (echo: true)
        self.offsets = [len(echo or "")] * generation.n

    def _logprobs(self, index: int, entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
        if self.generation.logprobs is None:
            return None
        out = CompletionLogprobs()
        for entry in entries or []:
            out.tokens.append(entry.token)
            out.token_logprobs.append(entry.logprob)
            out.top_logprobs.append({token: value for token, value, _ in entry.top})
            out.text_offset.append(self.offsets[index])
            self.offsets[index] += len(entry.token)
        return out.model_dump()

    def opening(self) -> list[dict[str, Any]]:
        if self.echo is None:
            return []
        return [self.envelope([{"index": i, "text": self.echo, "finish_reason": None, "logprobs": None}], whole=False)
                for i in range(self.generation.n)]

    def chunks(self, event: GenerationEvent) -> list[dict[str, Any]]:
        self.add(event)
        logprobs = self._logprobs(event.index, event.logprobs) if event.logprobs or isinstance(event, TextDelta) else None
        if isinstance(event, TextDelta):
            if not event.text and not event.logprobs:
                return []
            return [self.envelope([{"index": event.index, "text": event.text, "finish_reason": None,
                                    "logprobs": logprobs}], whole=False)]
        finish, stop_reason = api_finish(event)
        return [self.envelope([{"index": event.index, "text": "", "finish_reason": finish, "stop_reason": stop_reason,
                                "logprobs": logprobs}], whole=False)]

    def whole(self) -> dict[str, Any]:
        choices = []
        for index in range(self.generation.n):
            finish, stop_reason = api_finish(self.finished[index])
            choices.append({"index": index, "text": (self.echo or "") + self.texts[index], "finish_reason": finish,
                            "stop_reason": stop_reason, "logprobs": self._logprobs(index, self.logprobs[index])})
        return {**self.envelope(choices, whole=True), "usage": self.usage().model_dump()}
