"""Request and response schemas of the OpenAI-compatible API (a subset: chat completions and models).

The limits live here (`Field(ge=…, le=…)`, `Literal[…]`, strict types), so a bad request is rejected by
validation with a 400 naming the field, before any handler code runs. Fields OpenAI clients send that
lawtune does not use (`logprobs`, `logit_bias`, …) are accepted and ignored.

Repetition control: `frequency_penalty` and `presence_penalty` (OpenAI's meaning) and `repetition_penalty`
(vLLM's extension, HF-style) apply to the answer's own tokens only; left out, the server's defaults apply
(`lawtune serve --repetition-penalty …`). An answer ended by the repetition stop has finish_reason "stop"
(OpenAI's values) and `stop_reason: "repetition"` on its choice (vLLM's field; null otherwise).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TOKENS_LIMIT = 32768  # schema bound; the real bound is the model's context minus the prompt
MAX_STOP_STRINGS = 4


class _Strict(BaseModel):
    # strict: "5" is not an int and 1 is not a bool — wrong types are the client's bug, say so
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart] = Field(max_length=200_000)
    name: str | None = None

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        return {"role": self.role, "content": text}


class StreamOptions(_Strict):
    include_usage: bool = False


StopStrings = Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_STOP_STRINGS)]


class ChatCompletionRequest(_Strict):
    model: str | None = Field(None, description="a served model id (GET /v1/models); default: the first")
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Annotated[str, Field(min_length=1)] | StopStrings | None = None
    seed: int | None = None
    user: str | None = None
    # None: the server's default policy (docs/serving.md "Decoding")
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0, description="vLLM's extension; 1 = off")

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


# -- responses ------------------------------------------------------------------------------------------


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]
    stop_reason: str | None = None  # "repetition" when the repetition stop ended the answer (vLLM's field)
    logprobs: None = None


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
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None
    lawtune: dict[str, Any] | None = None  # on the chunk that carries finish_reason, with --kb


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "lawtune"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
