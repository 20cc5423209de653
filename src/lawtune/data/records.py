"""What every reader yields: a `Kept` conversation (an `Example` and its split key) or a counted `Drop`.

Readers (`csv_source`, `json_source`) turn one input record into exactly one of these, so
`rows read == kept + dropped` holds by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lawtune.data.cleaning import clean_text
from lawtune.data.conversations import Example


@dataclass(slots=True)
class Kept:
    """A record kept so far: one cleaned conversation (optional system, then user/assistant turns ending with
    the assistant; `example.line` is the source line) and the key that places it in a split."""

    example: Example
    split_key: str  # the question whose normalized hash picks the split (same question -> same split)


@dataclass(slots=True)
class Drop:
    """A record that is not used, and why (one of the reason names in `REASONS`)."""

    reason: str
    line: int


# Every reason a row can be dropped for, in the order the report lists them.
REASONS = {
    "bad_columns": "CSV row with a different number of fields than the header",
    "bad_quoting": "CSV row the parser could not read (broken quotes, oversized field)",
    "bad_encoding": "row with bytes that are not valid in the file's encoding",
    "bad_json": "JSONL line that is not valid JSON",
    "bad_record": "record without the fields its format needs, or with wrong types/roles",
    "missing_question": "empty question after cleaning",
    "missing_answer": "empty answer after cleaning",
    "not_best": "is_best is not 1 (policy --is-best best)",
    "not_best_for_title": "another answer was chosen for this title (policy --is-best best-per-title)",
    "too_short": "a question or answer shorter than --min-chars",
    "too_long": "a question or answer longer than --max-chars",
    "duplicate": "same normalized question and answer as an earlier row (--dedupe)",
}


_SURROGATE = re.compile("[\ud800-\udfff]")


def finish(
    messages: list[dict[str, str]],
    split_key: str,
    line: int,
    meta: dict[str, Any],
    *,
    clean: bool,
    system_prompt: str | None,
    tools: list[dict[str, Any]] | None = None,
) -> Kept | Drop:
    """Clean every turn, check nothing is empty or undecodable, add the system prompt when absent.

    Tool results are data (JSON) and are kept as they are; an assistant turn that calls a tool may be empty."""
    for turn in messages:
        content = turn["content"]
        if _SURROGATE.search(content):  # undecodable bytes (surrogateescape) or lone surrogates in JSON
            return Drop("bad_encoding", line)
        if turn["role"] != "tool":
            turn["content"] = clean_text(content) if clean else content.strip()
    if any(not turn["content"] for turn in messages if turn["role"] == "user"):
        return Drop("missing_question", line)
    if any(not turn["content"] and not turn.get("tool_calls") for turn in messages if turn["role"] == "assistant"):
        return Drop("missing_answer", line)
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    key = split_key if split_key.strip() else next(t["content"] for t in messages if t["role"] == "user")
    return Kept(Example(messages, meta, line, tools), key)
