"""The streaming detokenizer (`decoding.TextStream`) is incremental: at every step its text equals decoding
the whole answer, and it decodes a bounded number of tokens per step (linear in the answer, not quadratic).

    .venv/bin/pytest tests/serving/test_detokenizer.py -q
"""

from __future__ import annotations

import random

import pytest
from transformers import AutoTokenizer

from lawtune.modeling.decoding import TextStream

TEXTS = ["公司拖欠工资怎么办？可以向劳动监察大队投诉，也可以申请劳动仲裁。", "离婚需要什么材料 hello  world\n\n换行"]


class CountingTokenizer:
    """The real tokenizer, counting how many token ids each decode call is given."""

    def __init__(self, tokenizer):
        self.tokenizer, self.decoded = tokenizer, 0

    def decode(self, ids, **kwargs):
        self.decoded += len(ids)
        return self.tokenizer.decode(ids, **kwargs)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_text_equals_decoding_the_whole_answer_at_every_step(tokenizer):
    rng = random.Random(0)
    for trial in range(200):
        if trial % 2:  # real text: multi-byte characters split over byte-level tokens
            ids = tokenizer(rng.choice(TEXTS), add_special_tokens=False)["input_ids"]
        else:  # random tokens: incomplete and invalid UTF-8 sequences too
            ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randrange(1, 60))]
        stream, sent = TextStream(tokenizer), ""
        for step, token in enumerate(ids):
            sent += stream.push(token)
            whole = tokenizer.decode(ids[:step + 1], skip_special_tokens=True)
            assert stream.text.rstrip("\ufffd") == whole.rstrip("\ufffd")
            assert whole.startswith(sent)
        assert sent + stream.flush() == tokenizer.decode(ids, skip_special_tokens=True).rstrip("\ufffd")


def test_each_step_decodes_a_bounded_number_of_tokens(tokenizer):
    ids = tokenizer(TEXTS[0] * 40, add_special_tokens=False)["input_ids"]
    counting = CountingTokenizer(tokenizer)
    stream = TextStream(counting)
    for token in ids:
        stream.push(token)
    assert stream.text == tokenizer.decode(ids, skip_special_tokens=True)
    # re-decoding the whole answer each step would cost len(ids)²/2 token decodes
    assert len(ids) > 500 and counting.decoded < 10 * len(ids), (counting.decoded, len(ids))
