"""Request and response schemas of the OpenAI-compatible API: chat completions, completions, models.

The limits live here (`Field(ge=…, le=…)`, `Literal[…]`, strict types), so a bad request is rejected by
validation with a 400 naming the field, before any handler code runs. Every field is either honoured or
refused — never silently ignored (docs/serving.md, "Conformance"):
- an unknown field → 400 `unsupported_parameter` naming it (`extra="forbid"`);
- a known OpenAI field lawtune cannot honour (`tools`, `audio`, `prediction`, ...) is accepted only when it
  is null or empty (what clients send when they don't use it), else 400 `unsupported_parameter`;
- every optional field may be `null`, meaning "the default", as the OpenAI spec allows.

Repetition control: `frequency_penalty` and `presence_penalty` (OpenAI's meaning) and `repetition_penalty`
(vLLM's extension, HF-style) apply to the answer's own tokens only; left out, the server's defaults apply
(`lawtune serve --repetition-penalty …`). An answer ended by the repetition stop has finish_reason "stop"
(OpenAI's values) and `stop_reason: "repetition"` on its choice (vLLM's field; null otherwise).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

MAX_TOKENS_LIMIT = 32768  # schema bound; the real bound is the model's context minus the prompt
MAX_STOP_STRINGS = 4
MAX_CHOICES = 8  # n: choices are generated side by side in the batch
MAX_TOP_LOGPROBS = 20
SEED_RANGE = dict(ge=-(2**63), le=2**63 - 1)


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


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(max_length=200_000)
    # what the SDK puts on an assistant message a client appends back to the conversation: accepted empty
    name: str | None = None
    tool_calls: list[Any] | None = None
    function_call: Any = None
    refusal: str | None = None
    audio: Any = None
    annotations: list[Any] | None = None

    @field_validator("name", "tool_calls", "function_call", "refusal", "audio", "annotations")
    @classmethod
    def _no_tools_or_names(cls, value: Any, info: Any) -> Any:
        return _refuse_unless_empty(value, info, "the chat template has no speaker names, tool calls or audio; "
                                    "leave it out or null")

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        role = "system" if self.role == "developer" else self.role  # OpenAI's newer name for system
        return {"role": role, "content": text}


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
        return self

    def target_schema(self) -> dict[str, Any] | None:
        """The JSON schema answers must follow (None: free text)."""
        if self.type == "json_object":
            return {"type": "object"}
        if self.type == "json_schema":
            return (self.json_schema.schema_ if self.json_schema and self.json_schema.schema_ else {"type": "object"})
        return None


StopStrings = Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_STOP_STRINGS)]
Penalty = Annotated[float | None, Field(ge=-2.0, le=2.0)]


class _Sampling(_Strict):
    """The fields chat completions and completions share."""

    model: str | None = Field(None, description="a served model id or alias (GET /v1/models); default: the first")
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 = greedy; null = 1")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="vLLM's extension; 0 or -1 = off")
    min_p: float | None = Field(None, ge=0.0, le=1.0, description="vLLM's extension; 0 = off")
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: Annotated[str, Field(min_length=1)] | StopStrings | None = None
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
            if not key.isdigit():
                raise ValueError(f"keys are token ids (\"1234\"), got {key!r}")
        return value

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def bias(self) -> dict[int, float]:
        return {int(key): value for key, value in (self.logit_bias or {}).items()}


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    # honoured as what they mean here: no tools are ever called, nothing is stored, one service tier
    tools: list[Any] | None = None
    tool_choice: Literal["none"] | None = None
    parallel_tool_calls: bool | None = None
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

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value: Any, info: Any) -> Any:
        return _refuse_unless_empty(value, info, "the model cannot call tools; leave it out or send []")

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

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def logprob_count(self) -> int | None:
        """None: no logprobs; k: the sampled token's and the k most likely."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Sampling):
    prompt: (Annotated[str, Field(max_length=1_000_000)] | Annotated[list[str], Field(min_length=1, max_length=1)]
             | Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=MAX_TOKENS_LIMIT)])
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

    def prompt_text(self) -> str | None:
        """The prompt as text (None when the client sent token ids)."""
        if isinstance(self.prompt, str):
            return self.prompt
        return self.prompt[0] if isinstance(self.prompt[0], str) else None

    def prompt_ids(self) -> list[int] | None:
        return list(self.prompt) if self.prompt and isinstance(self.prompt, list) and isinstance(self.prompt[0], int) else None


# -- responses ------------------------------------------------------------------------------------------


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


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]
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


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
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


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    stop_reason: str | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


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
