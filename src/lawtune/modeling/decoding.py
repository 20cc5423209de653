"""Decoding policy: repetition control and the repetition stop, one definition for eval, infer, chat and serve.

    policy = DecodingPolicy()                                  # the measured defaults (docs/evaluation.md)
    policy = DecodingPolicy(repetition_penalty=1.0, repetition_stop=False)   # plain greedy, nothing added

    # model.generate (evaluation/generation.py): both objects go into generate(...)
    processor = AnswerLogitsProcessor(policy, prompt_width=input_ids.shape[1], stop_ids=chat.stop_token_ids)
    criteria = RepetitionStopCriteria(tokenizer, rows=len(input_ids), prompt_width=..., stop_ids=...)

    # one sequence at a time (serving/engines/batch.py): the same arithmetic on one row of logits
    logits = penalize(logits, generated_ids, policy, stop_ids)

    # the text side (serving/engines/local.py, generation.decode_new_tokens, infer's streamer)
    stream = TextStream(tokenizer, watch=RepetitionWatch(), hold=STREAM_HOLD_CHARS)
    delta = stream.push(token_id)      # text that may be shown now; stream.repeated says the stop fired

Two parts:
- Repetition control changes the logits of tokens the *answer* already holds: HF-style multiplicative
  `repetition_penalty`, OpenAI-style `frequency_penalty` (× count) and `presence_penalty` (once), and a
  `no_repeat_ngram_size` ban — all over the generated tokens only. HF's own `repetition_penalty` also counts
  the prompt, where the chat template's `<end_of_turn>` sits, so it pushes the model away from ending its
  turn; here the prompt and the stop tokens are never touched.
- The repetition stop ends an answer the moment some span of `LOOP_SPAN_CHARS` characters has occurred
  `LOOP_REPEATS` times without overlapping — exactly when `lawtune.evaluation.metrics.loops` would first
  flag it (that module takes its constants from here) — and cuts it back to the last sentence end
  (。！？；!?; or a newline) before the span's second occurrence: one copy of the repeated content stays,
  and what stays is never flagged as looping. Its finish reason is "repetition" (not "stop": the model did
  not end the answer on its own).

Nothing heavy is imported at module level (metrics and the CLIs import this for constants and defaults);
the transformers hooks are plain callables, which `LogitsProcessorList` / `StoppingCriteriaList` accept.
"""

from __future__ import annotations

import bisect
from collections.abc import Container, Iterable, Sequence
from dataclasses import asdict
from typing import Any

from pydantic import Field, field_validator
from pydantic.dataclasses import dataclass

from lawtune.modeling.tool_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

# What counts as a loop (metrics.loops reports it, the repetition stop prevents it): some span of
# LOOP_SPAN_CHARS characters occurring LOOP_REPEATS times without overlapping.
LOOP_SPAN_CHARS = 10
LOOP_REPEATS = 3
SENTENCE_ENDS = frozenset("。！？；!?;\n")
# A stream shows text at most this many characters late while a repeated span is pending (see
# RepetitionWatch.showable): enough to cover a loop of a sentence or two, which is how small models loop.
STREAM_HOLD_CHARS = 200


@dataclass(frozen=True)
class DecodingPolicy:
    """How answers are decoded besides greedy/sampling. Defaults measured with benchmarks/decoding_sweep.py.

    The limits live in the fields (a pydantic dataclass): a bad value is a ValidationError naming every bad
    field at once; the CLIs turn it into one line naming the flags (`lawtune.settings.validate`)."""

    # HF-style: divides a positive logit (multiplies a negative one); 1 = off. 1.3: the full recipe's dev split
    # (docs/evaluation.md) — ended 90 % vs 52.5 % at 1.2, ROUGE-L 22.00 vs 21.30
    repetition_penalty: float = Field(1.3, gt=0, description="HF-style penalty on tokens the answer already holds "
                                      "(never the prompt or the end-of-turn token); 1.0 = off.")
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0,  # OpenAI's range
                                     description="OpenAI-style: minus this × the token's count in the answer; 0 = off.")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="OpenAI-style: minus this once a token is in the answer; 0 = off.")
    no_repeat_ngram_size: int = Field(0, ge=0, description="Never repeat an n-gram of the answer; 0 = off.")
    repetition_stop: bool = Field(True, description=f"End an answer when a {LOOP_SPAN_CHARS}-character span occurs "
                                  f"{LOOP_REPEATS} times, cut at the last sentence end before the loop (finish reason 'repetition').")
    # lawtune.tools.constrain (tool_choice auto): the answer after a round of tool results
    tool_figures: bool = Field(True, description="In the answer after tool results, numbers in digits only as the "
                               "results or the user's words write them, and no repetition penalty on digits.")
    tool_said_required: bool = Field(True, description="A call must give what the user's words settle: 违法解除 → "
                                     "unlawful true, hours in a clause naming 周末 / 法定节假日 / 下班后加班 under that "
                                     "kind (x-required-when-said, docs/tools.md).")
    tool_result_figure: bool = Field(False, description="In the answer after tool results, the turn may not end "
                                     "before it states each figure the results return (an amount in digits, a date); "
                                     "the figure comes from the results, never the question (docs/tools.md).")

    @field_validator("no_repeat_ngram_size")
    @classmethod
    def _ngram_of_two_or_more(cls, size: int) -> int:
        if size == 1:
            raise ValueError("must be 0 (off) or ≥ 2 (a 1-gram ban would forbid every token used once)")
        return size

    @property
    def penalizes(self) -> bool:
        return (self.repetition_penalty != 1.0 or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0
                or self.no_repeat_ngram_size > 0)

    def record(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------
# Repetition control on the logits (one row at a time; both generate() and the server call `penalize`)
# ----------------------------------------------------------------------------------------------------


def penalize(logits: Any, generated: Sequence[int], policy: DecodingPolicy, stop_ids: Iterable[int]) -> Any:
    """`logits` [vocab] for the next token of an answer that holds `generated` so far (prompt excluded).

    Returns a new float32 tensor (the input is never changed in place: the server keeps its logits for
    checks). Stop tokens are left alone, so ending the answer never gets harder.
    """
    stops = set(stop_ids)
    answer = [token for token in generated if token not in stops]
    if not policy.penalizes or not answer:
        return logits
    import torch

    out = logits.float().clone()
    tokens, counts = torch.unique(torch.tensor(answer, dtype=torch.long), return_counts=True)
    picked = out[tokens]
    if policy.repetition_penalty != 1.0:  # the same formula as transformers' RepetitionPenaltyLogitsProcessor
        picked = torch.where(picked < 0, picked * policy.repetition_penalty, picked / policy.repetition_penalty)
    picked = picked - policy.frequency_penalty * counts - policy.presence_penalty
    out[tokens] = picked
    if policy.no_repeat_ngram_size:
        banned = _ngram_bans(list(generated), policy.no_repeat_ngram_size) - stops
        if banned:
            out[torch.tensor(sorted(banned), dtype=torch.long)] = float("-inf")
    return out


def _ngram_bans(generated: list[int], size: int) -> set[int]:
    """Tokens that would complete an n-gram the answer already contains (the answer's last n-1 tokens)."""
    if len(generated) < size:
        return set()
    tail = generated[len(generated) - size + 1:]
    return {generated[start + size - 1] for start in range(len(generated) - size + 1)
            if generated[start:start + size - 1] == tail}


class AnswerLogitsProcessor:
    """`penalize` as a transformers logits processor, for `model.generate(..., logits_processor=[this])`.

    generate() passes the whole `input_ids` [batch, prompt + new]; with left padding every row's prompt
    ends at the same column, `prompt_width`, so a row's answer is `input_ids[row, prompt_width:]`.
    """

    def __init__(self, policy: DecodingPolicy, prompt_width: int, stop_ids: Iterable[int]):
        self.policy, self.prompt_width, self.stop_ids = policy, prompt_width, frozenset(stop_ids)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if not self.policy.penalizes or input_ids.shape[1] <= self.prompt_width:
            return scores
        rows = [penalize(scores[row], input_ids[row, self.prompt_width:].tolist(), self.policy, self.stop_ids)
                for row in range(scores.shape[0])]
        import torch

        return torch.stack([row.to(scores.dtype) for row in rows])


# ----------------------------------------------------------------------------------------------------
# The repetition stop (on the text, as metrics.loops sees it)
# ----------------------------------------------------------------------------------------------------


class RepetitionWatch:
    """Watches an answer's text grow and fires when a span first occurs LOOP_REPEATS times.

        watch = RepetitionWatch()
        if watch.feed(text_so_far):       # text_so_far only ever grows at the end
            answer = text_so_far[:watch.cut]

    Incremental: each new character adds one span (the one ending at it), so a step costs O(new text),
    never a rescan. Occurrences are counted as `str.count` does (left to right, non-overlapping), so the
    watch fires exactly at the first prefix for which `metrics.loops` is True.

    Text inside a `<tool_call>…</tool_call>` block is not counted: a call decoded under its grammar repeats its
    key pattern by design (`"weekday_hours": "16小时", "rest_day_hours": "8小时", …`), and cutting it leaves an
    empty call (docs/tools.md "Measured", s34).
    """

    def __init__(self, span: int = LOOP_SPAN_CHARS, repeats: int = LOOP_REPEATS):
        self.span, self.repeats = span, repeats
        self.text = ""
        self.cut: int | None = None  # set when fired: keep text[:cut]
        self.first_repeat: int | None = None  # where the first second occurrence of any span starts
        self._spans: dict[str, list[int]] = {}  # span → [count, start of the last counted, start of the 2nd]
        self._ends: list[int] = []  # positions just after each sentence end, ascending
        self._in_block = False  # inside a tool-call block: its spans are not counted
        self._block_end = 0  # just after the last closed block: no counted span starts before it

    def feed(self, text: str) -> bool:
        """Take the answer's text so far; True once it loops (then `cut` says where to cut it)."""
        if self.cut is not None:
            return True
        text = text.rstrip("\ufffd")  # an incomplete UTF-8 character is not text yet
        for end in range(len(self.text), len(text)):
            if not self._in_block and text.endswith(TOOL_CALL_OPEN, 0, end + 1):
                self._in_block = True
            elif self._in_block and text.endswith(TOOL_CALL_CLOSE, 0, end + 1):
                self._in_block, self._block_end = False, end + 1
                self._ends.append(end + 1)  # a cut after the block keeps it whole, never one inside it
                continue
            if self._in_block:
                continue
            if text[end] in SENTENCE_ENDS:
                self._ends.append(end + 1)
            start = end + 1 - self.span
            if start < self._block_end:
                continue
            entry = self._spans.setdefault(text[start:end + 1], [0, -self.span, -1])
            if start < entry[1] + self.span:
                continue  # overlaps the occurrence counted last
            entry[0] += 1
            entry[1] = start
            if entry[0] == 2:
                entry[2] = start
                if self.first_repeat is None:
                    self.first_repeat = start
            if entry[0] >= self.repeats:
                self.text = text[:end + 1]
                self.cut = self.sentence_start(entry[2])
                return True
        self.text = text
        return False

    def sentence_start(self, position: int) -> int:
        """The last sentence end at or before `position` (what stays when the text is cut there).

        A repetition inside the first sentence has no sentence end before it: the cut is then at the
        repetition itself, so the first copy stays rather than nothing."""
        at = bisect.bisect_right(self._ends, position)
        return self._ends[at - 1] if at else position

    def showable(self, hold: int | None) -> int:
        """How much of the text may be handed out now.

        hold=None (eval, non-streamed answers): only what no later cut can remove. A cut falls at the
        sentence end before a span's second occurrence, and an occurrence not yet seen whole starts within
        the last span-1 characters, so this is the sentence end before the first second occurrence or
        before those characters — the text handed out then always equals the cut answer.
        hold=N (streams): everything until some span has occurred twice, then text from the sentence end
        before that second occurrence is held, for at most N characters. A later cut cannot take back what
        was shown, so a streamed looping answer may keep a piece of its second copy; it never holds
        LOOP_REPEATS copies (it was cut before the third was complete)."""
        if self.cut is not None:
            return self.cut
        if hold is None:
            unseen = max(len(self.text) - self.span + 1, 0)
            return self.sentence_start(unseen if self.first_repeat is None else min(unseen, self.first_repeat))
        if self.first_repeat is None:
            return len(self.text)
        return max(self.sentence_start(self.first_repeat), len(self.text) - hold)


def cut_repetition(text: str) -> str | None:
    """`text` cut as the repetition stop would cut it, or None when it does not loop.

    For answers already written (a predictions file from before the stop, another system's output): part of
    the Python API (docs/evaluation.md). lawtune's own generation cuts as tokens arrive, through `TextStream`
    and `RepetitionWatch`; this is the same watch fed the whole text at once."""
    watch = RepetitionWatch()
    return text[:watch.cut] if watch.feed(text) else None


# ----------------------------------------------------------------------------------------------------
# Streaming one answer's text: detokenization, stop strings, the repetition stop
# ----------------------------------------------------------------------------------------------------


class StopMatcher:
    """Knuth–Morris–Pratt for one stop string: `advance(state, char)` is amortized O(1), where `state` is
    the length of the longest prefix of the stop string that ends the text seen so far (len(stop): found)."""

    def __init__(self, stop: str):
        self.stop = stop
        self.state = 0
        # fail[i]: length of the longest proper prefix of stop[:i + 1] that is also its suffix
        self.fail = [0] * len(stop)
        k = 0
        for i in range(1, len(stop)):
            while k and stop[i] != stop[k]:
                k = self.fail[k - 1]
            if stop[i] == stop[k]:
                k += 1
            self.fail[i] = k

    def advance(self, state: int, char: str) -> int:
        stop = self.stop
        if state == len(stop):
            state = self.fail[state - 1]
        while state and stop[state] != char:
            state = self.fail[state - 1]
        return state + 1 if stop[state] == char else state


class TextStream:
    """Incremental detokenization of one answer, with stop strings and (optionally) the repetition stop.

        stream = TextStream(tokenizer, stop=["\\n\\n问："], watch=RepetitionWatch(), hold=STREAM_HOLD_CHARS)
        delta = stream.push(token_id)     # text safe to send now ("" while a multi-byte char, a possible
                                          # stop-string prefix or a possible repetition is pending)
        stream.stopped                    # True once a stop string appeared or the answer looped
        stream.repeated                   # True when the repetition stop ended it
        rest = stream.flush()             # what was held back, at the end
        stream.text                       # the whole answer (cut, when it looped)

    `hold` bounds how late the repetition watch may make the stream (see `RepetitionWatch.showable`); None
    holds until the end, so the text sent equals the cut answer exactly (non-streaming responses, eval).
    """

    def __init__(self, tokenizer: Any, stop: list[str] | None = None, *, watch: RepetitionWatch | None = None,
                 hold: int | None = None):
        self.tokenizer = tokenizer
        self.stop = [s for s in (stop or []) if s]
        # one KMP matcher per stop string, fed each final character once: finding a stop string and the
        # text to hold back cost O(1) per character however long the stop strings and the answer are
        self._matchers = [StopMatcher(s) for s in self.stop]
        self._fed = 0  # characters of `_decoded` the matchers have seen
        self.watch, self.hold = watch, hold
        self.ids: list[int] = []
        # incremental detokenization (linear in the answer): text of ids[:_read] is final in `_decoded`;
        # ids[_prefix:_read] are decoded again as context so that the tokenizer's leading-space and
        # byte-fallback rules see what they would see in the whole answer
        self._decoded = ""
        self._prefix = self._read = 0
        self.sent = 0  # characters of the decoded text already handed out
        self.text = ""
        self.stopped = False
        self.repeated = False

    def push(self, token_id: int) -> str:
        """Add one generated token (not an end-of-turn token) and return the text that may be sent now."""
        self.ids.append(token_id)
        tail = self._decode_tail()  # first: it may move text into `_decoded`
        self.text = self._decoded + tail
        held, at = self._match_stops(tail)
        if at is not None:
            self.stopped = True
            self.text = self.text[:at]
            return self._take(len(self.text))
        if self.watch is not None and self.watch.feed(self.text):
            # text already sent stays sent: the answer is cut no earlier than that
            self.stopped = self.repeated = True
            self.text = self.text[:max(self.watch.cut, self.sent)]
            return self._take(len(self.text))
        if self.text.endswith("\ufffd"):
            return ""  # an incomplete UTF-8 sequence: wait for the next byte-token
        upto = len(self.text) - held
        if self.watch is not None:
            upto = min(upto, self.watch.showable(self.hold))
        return self._take(upto)

    def _decode_tail(self) -> str:
        """Text of the ids after `_read` (ending with U+FFFD while a character's bytes are incomplete): the
        decode of ids[_prefix:] minus that of ids[_prefix:_read] — a few tokens a step, not the whole answer."""
        decode = self.tokenizer.decode
        context = decode(self.ids[self._prefix:self._read], skip_special_tokens=True)
        tail = decode(self.ids[self._prefix:], skip_special_tokens=True)
        if not tail.startswith(context):  # a tokenizer that rewrites its context: fall back to the whole answer
            tail, context = decode(self.ids, skip_special_tokens=True), self._decoded
            if not tail.startswith(context):
                return tail[len(self._decoded):]
        new = tail[len(context):]
        if not new.endswith("\ufffd"):  # complete: make it final, the next step decodes from here
            self._decoded += new
            self._prefix, self._read = self._read, len(self.ids)
            return ""
        return new

    def flush(self) -> str:
        """Everything not yet sent (at the end of generation)."""
        return self._take(len(self.text.rstrip("\ufffd")))

    def _match_stops(self, tail: str) -> tuple[int, int | None]:
        """(characters to hold back: the longest text suffix that could still grow into a stop string,
        where the first stop string found starts or None). The final text is fed once; the pending `tail`
        (a few characters) from the matchers' states without changing them."""
        if not self._matchers:
            return 0, None
        new, base = self._decoded[self._fed:], self._fed
        self._fed = len(self._decoded)
        for offset, char in enumerate(new):
            found = 0  # the longest stop string ending here starts first
            for matcher in self._matchers:
                matcher.state = matcher.advance(matcher.state, char)
                if matcher.state == len(matcher.stop):
                    found = max(found, matcher.state)
            if found:
                return 0, base + offset + 1 - found
        held, first = 0, None  # first: (end, -length) of the first stop string completed in the tail
        for matcher in self._matchers:
            state = matcher.state
            for offset, char in enumerate(tail):
                state = matcher.advance(state, char)
                if state == len(matcher.stop):
                    first = min(first or (offset, -state), (offset, -state))
                    break
            held = max(held, state)
        if first is not None:
            return 0, len(self._decoded) + first[0] + 1 + first[1]
        return held, None

    def _take(self, upto: int) -> str:
        upto = max(upto, self.sent)
        delta = self.text[self.sent:upto]
        self.sent = upto
        return delta


def advance(stream: TextStream, token: int, stop_ids: Container[int]) -> tuple[str, str | None]:
    """One generated token → (the text that may be shown now, why the answer ends here or None to go on).

    The one token → finish-reason rule of eval, the stopping criterion and the server: "stop" for an
    end-of-turn token (not pushed: it is no text) or a stop string, "repetition" when the repetition stop
    fired. The budget ("length") is the caller's to check."""
    if token in stop_ids:
        return "", "stop"
    delta = stream.push(token)
    return delta, "repetition" if stream.repeated else "stop" if stream.stopped else None


class RepetitionStopCriteria:
    """The repetition stop as a transformers stopping criterion: `generate(..., stopping_criteria=[this])`.

    Returns a per-row bool tensor (transformers ≥ 4.39 stops rows independently). Each row's new tokens go
    through its own `TextStream` + `RepetitionWatch`, the same code the server runs, so both stop at the
    same token; `generation.decode_new_tokens` repeats the watch on the finished ids to cut the text.
    """

    def __init__(self, tokenizer: Any, rows: int, prompt_width: int, stop_ids: Iterable[int]):
        self.prompt_width, self.stop_ids = prompt_width, frozenset(stop_ids)
        self.streams = [TextStream(tokenizer, watch=RepetitionWatch()) for _ in range(rows)]
        self.done = [False] * rows  # ended (stop token) or looped: nothing more to watch

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        fired = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        for row, stream in enumerate(self.streams):
            if self.done[row]:
                fired[row] = stream.repeated
                continue
            # one call per new token; catch up in case a caller checks less often
            for token in input_ids[row, self.prompt_width + len(stream.ids):].tolist():
                if advance(stream, token, self.stop_ids)[1] is not None:
                    self.done[row] = True
                    break
            fired[row] = stream.repeated
        return fired
