"""Chat formatting: render conversations with a Jinja chat template and build training labels.

The template is data (a `.jinja` file), never code. Everything model-specific that lawtune needs —
where the answer starts, which token ends a turn — is derived from the template itself by rendering,
so ChatGLM3, Gemma or any tokenizer's own template work the same way.

    chat = ChatFormat(tokenizer, template_text)
    ids = chat.encode_prompt([{"role": "user", "content": "离婚需要什么材料？"}])
    example = chat.encode_example(conversation, max_input_length=256, max_output_length=256)
    example.input_ids, example.labels   # labels are -100 everywhere except assistant tokens + end token
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lawtune.errors import LawtuneError

IGNORE_INDEX = -100
SHIPPED_TEMPLATES = ("gemma", "chatglm3")
# Which shipped template a model family needs when its tokenizer carries none (config.model_type → name).
DEFAULT_TEMPLATE_FOR_MODEL_TYPE = {"gemma3": "gemma", "gemma3_text": "gemma", "gemma2": "gemma",
                                   "gemma": "gemma", "chatglm": "chatglm3"}
_SENTINEL = "\u2063LAWTUNE\u2063"  # invisible separator: never produced by real data


def load_template(name_or_path: str) -> str:
    """Read a shipped template by name (`gemma`, `chatglm3`) or any `.jinja` file by path."""
    if name_or_path in SHIPPED_TEMPLATES:
        return resources.files("lawtune.modeling").joinpath(f"templates/{name_or_path}.jinja").read_text("utf-8")
    path = Path(name_or_path)
    if not path.is_file():
        raise LawtuneError(
            f"chat template {name_or_path!r} not found: use one of {', '.join(SHIPPED_TEMPLATES)} "
            "or the path of a .jinja file"
        )
    return path.read_text(encoding="utf-8")


def resolve_template(tokenizer: Any, requested: str | None, model_type: str | None = None) -> str:
    """The template to use: the one requested, else the tokenizer's own, else the family default."""
    if requested:
        return load_template(requested)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    if model_type in DEFAULT_TEMPLATE_FOR_MODEL_TYPE:
        return load_template(DEFAULT_TEMPLATE_FOR_MODEL_TYPE[model_type])
    raise LawtuneError(
        f"the tokenizer has no chat template and model type {model_type!r} has no shipped default: "
        f"set model.chat_template to one of {', '.join(SHIPPED_TEMPLATES)} or a .jinja file"
    )


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def supervised_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


class ChatFormat:
    """A tokenizer plus a chat template, with the end-of-turn marker derived from the template."""

    def __init__(self, tokenizer: Any, template: str):
        self.tokenizer = tokenizer
        self.template = template
        # Render a one-turn conversation with a sentinel answer: what follows the sentinel is the text the
        # template puts after every answer (e.g. "<end_of_turn>\n" for Gemma, "</s>" for ChatGLM3).
        full = self.render([{"role": "user", "content": "q"}, {"role": "assistant", "content": _SENTINEL}])
        after = full.split(_SENTINEL, 1)[1]
        self.end_of_turn_text = after.rstrip("\n") or (tokenizer.eos_token or "")
        end_ids = self._encode(self.end_of_turn_text)
        if not end_ids:
            raise LawtuneError("the chat template puts no end-of-turn marker after an answer and the tokenizer has no eos token")
        self.end_of_turn_ids = end_ids
        stops = {end_ids[0]}
        if tokenizer.eos_token_id is not None:
            stops.add(tokenizer.eos_token_id)
        self.stop_token_ids = sorted(stops)

    # -- rendering -----------------------------------------------------------------------------------
    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False,
               tools: list[Any] | None = None) -> str:
        """The conversation as text. `tools`: OpenAI tool dicts (or lawtune `Tool`s) the template shows the
        model; assistant `tool_calls` and `tool` messages are normalised first (docs/tools.md)."""
        from lawtune.modeling.tool_format import normalize_tool_messages, tool_definitions

        try:
            messages = normalize_tool_messages(messages)
            extra = {"tools": tool_definitions(tools)} if tools else {}
        except ValueError as error:
            raise LawtuneError(f"bad tool message or definition: {error}") from None
        try:
            return self.tokenizer.apply_chat_template(
                messages, chat_template=self.template, tokenize=False, add_generation_prompt=add_generation_prompt,
                **extra,
            )
        except Exception as error:  # jinja errors: a broken template file is a user problem
            raise LawtuneError(f"the chat template failed to render: {error}") from error

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_prompt(self, messages: list[dict[str, Any]], tools: list[Any] | None = None) -> list[int]:
        """Token ids of a conversation ending with a user (or tool) turn, followed by the answer header."""
        return self._encode(self.render(messages, add_generation_prompt=True, tools=tools))

    # -- training ------------------------------------------------------------------------------------
    def segments(self, messages: list[dict[str, Any]], tools: list[Any] | None = None) -> list[tuple[str, bool]]:
        """Split a rendered conversation into (text, supervised) pieces.

        Each assistant turn contributes its content (tool-call blocks included) plus the end-of-turn marker as
        a supervised piece; everything else (headers, user, system and tool-result text) is context.
        """
        pieces: list[tuple[str, bool]] = []
        done = ""
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:index], add_generation_prompt=True, tools=tools)
            full = self.render(messages[: index + 1], tools=tools)
            if not (prompt.startswith(done) and full.startswith(prompt)):
                raise LawtuneError("the chat template does not render conversations as growing prefixes")
            answer = full[len(prompt):]
            supervised = answer[: answer.index(self.end_of_turn_text) + len(self.end_of_turn_text)] \
                if self.end_of_turn_text in answer else answer
            pieces.append((prompt[len(done):], False))
            pieces.append((supervised, True))
            done = prompt + supervised
        return pieces

    def encode_example(
        self, messages: list[dict[str, Any]], max_input_length: int, max_output_length: int,
        tools: list[Any] | None = None,
    ) -> EncodedExample | None:
        """Input ids and labels for one conversation, within the two length budgets (None: unusable).

        `encode_checked` says why an example was dropped or changed; this is the short form for callers
        that only need the ids (eval loss).
        """
        return self.encode_checked(messages, max_input_length, max_output_length, tools=tools).example

    def encode_checked(
        self, messages: list[dict[str, Any]], max_input_length: int, max_output_length: int,
        tools: list[Any] | None = None,
    ) -> "Encoding":
        """Encode one conversation, teaching the stop: every kept answer ends with the end-of-turn marker.

        The last answer gets at most `max_output_length` tokens including its end-of-turn marker. A longer
        answer is cut after its last complete sentence (。！？；!?; or a line break) that fits, so the model
        never learns to stop mid-sentence; with no sentence end inside the budget it is dropped, never
        silently truncated; an answer holding a tool call is never cut (half a call teaches a broken call).
        Everything before it is the prompt: at most `max_input_length` tokens, cut from the left so the latest
        question survives, with exactly one leading BOS; `tools` (OpenAI dicts) are rendered into the prompt.
        """
        pieces = self.segments(messages, tools=tools)
        if not pieces:
            return Encoding(None, DROP_NO_ANSWER)
        *context, (answer_text, _) = pieces
        end = self.end_of_turn_ids
        body_text = answer_text[: -len(self.end_of_turn_text)] if answer_text.endswith(self.end_of_turn_text) else answer_text
        body = self._encode(body_text)
        note = None
        budget = max(0, max_output_length - len(end))
        if len(body) > budget:
            if "<tool_call>" in body_text or "tool_call(" in body_text:
                return Encoding(None, DROP_CALL_TOO_LONG)
            body = self._cut_at_sentence(body, budget)
            note = CUT_AT_SENTENCE if body else DROP_TOO_LONG
        if not body:
            return Encoding(None, note or DROP_EMPTY_ANSWER)  # an empty answer teaches only "stop at once"
        answer_ids = body + end

        prompt_ids: list[int] = []
        prompt_labels: list[int] = []
        for text, supervised in context:
            ids = self._encode(text)
            prompt_ids += ids
            prompt_labels += ids if supervised else [IGNORE_INDEX] * len(ids)
        bos = self.tokenizer.bos_token_id
        if len(prompt_ids) > max_input_length:
            cut = len(prompt_ids) - max_input_length
            keep_bos = bos is not None and prompt_ids[:1] == [bos]
            prompt_ids, prompt_labels = prompt_ids[cut:], prompt_labels[cut:]
            if keep_bos:
                prompt_ids = [bos] + prompt_ids[1:]
                prompt_labels = [IGNORE_INDEX] + prompt_labels[1:]
        while bos is not None and prompt_ids[:2] == [bos, bos]:  # a template and a tokenizer both adding one
            prompt_ids, prompt_labels = prompt_ids[1:], prompt_labels[1:]
        return Encoding(EncodedExample(prompt_ids + answer_ids, prompt_labels + answer_ids), note)

    def _cut_at_sentence(self, body: list[int], budget: int) -> list[int]:
        """The longest prefix of `body` within `budget` tokens that ends a sentence ([] if none does)."""
        text = self.tokenizer.decode(body[:budget], skip_special_tokens=False)
        end = max(text.rfind(mark) for mark in SENTENCE_ENDS)
        while end >= 0:
            ids = self._encode(text[: end + 1])
            if len(ids) <= budget:  # re-encoding a shorter text can merge tokens differently: check
                return ids
            end = max(text.rfind(mark, 0, end) for mark in SENTENCE_ENDS)
        return []


# Where an over-long answer may be cut: the end of a sentence or a clause (Chinese and ASCII), or a line.
SENTENCE_ENDS = ("。", "！", "？", "；", "!", "?", ";", "\n")
CUT_AT_SENTENCE = "answer cut at a sentence end to fit max_output_length"
DROP_TOO_LONG = "answer longer than max_output_length with no sentence end inside it"
DROP_CALL_TOO_LONG = "tool-call answer longer than max_output_length (a call is never cut)"
DROP_EMPTY_ANSWER = "no supervised token (empty answer)"
DROP_NO_ANSWER = "no assistant turn"


@dataclass
class Encoding:
    """An encoded example (None when dropped) and why it was dropped or changed (None: kept as it is)."""

    example: EncodedExample | None
    note: str | None = None
