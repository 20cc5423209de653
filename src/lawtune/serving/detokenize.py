"""Incremental detokenization with stop strings, for streaming one sequence's answer.

    stream = TextStream(tokenizer, stop=["\\n\\n问："])
    delta = stream.push(token_id)     # text safe to send now ("" while a multi-byte char or a possible
                                      # stop-string prefix is still incomplete)
    stream.stopped                    # True once a stop string appeared (its text is never sent)
    rest = stream.flush()             # what was held back, at the end
"""

from __future__ import annotations

from typing import Any


class TextStream:
    def __init__(self, tokenizer: Any, stop: list[str] | None = None):
        self.tokenizer = tokenizer
        self.stop = [s for s in (stop or []) if s]
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already handed out
        self.text = ""
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one generated token (not an end-of-turn token) and return the text that may be sent now."""
        self.ids.append(token_id)
        # decoding the whole answer each time is what makes byte-level BPE pieces of one Chinese character
        # come out right; answers are short enough that this costs microseconds
        self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        for stop in self.stop:
            at = self.text.find(stop, max(0, self.sent - len(stop)))
            if at != -1:
                self.stopped = True
                self.text = self.text[:at]
                return self._take(len(self.text))
        if self.text.endswith("\ufffd"):
            return ""  # an incomplete UTF-8 sequence: wait for the next byte-token
        return self._take(len(self.text) - self._held_back())

    def flush(self) -> str:
        """Everything not yet sent (at the end of generation)."""
        return self._take(len(self.text.rstrip("\ufffd")))

    def _held_back(self) -> int:
        """Length of the longest text suffix that could still grow into a stop string."""
        longest = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def _take(self, upto: int) -> str:
        upto = max(upto, self.sent)
        delta = self.text[self.sent:upto]
        self.sent = upto
        return delta
