"""The decoding policy: repetition control touches only the answer's own non-stop tokens; the repetition
stop fires exactly when `metrics.loops` would first flag the answer and cuts it at a sentence end.

    .venv/bin/pytest tests/modeling/test_decoding.py -q
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from lawtune.evaluation.metrics import loops
from lawtune.modeling.decoding import (AnswerLogitsProcessor, DecodingPolicy, RepetitionWatch, TextStream,
                                       cut_repetition, penalize)

VOCAB, STOP, PROMPT_ONLY, ANSWER = 12, 5, 7, 3  # token ids used below


@pytest.mark.parametrize("policy", [DecodingPolicy(repetition_penalty=1.5), DecodingPolicy(frequency_penalty=0.7),
                                    DecodingPolicy(presence_penalty=0.9), DecodingPolicy(no_repeat_ngram_size=2)])
def test_penalty_never_touches_prompt_or_stop_tokens(policy):
    """Row layout as generate() passes it: [left pad, prompt | answer]; the prompt holds PROMPT_ONLY and the
    stop token (the chat template's <end_of_turn>), the answer holds ANSWER twice and the stop token."""
    prompt = [[0, PROMPT_ONLY, STOP, ANSWER, 9], [PROMPT_ONLY, STOP, PROMPT_ONLY, STOP, 9]]
    answer = [[9, ANSWER, 9, STOP, ANSWER, 9], [ANSWER, 9, ANSWER, 9, ANSWER, 9]]  # "9 STOP" seen: STOP stays allowed
    input_ids = torch.tensor([p + a for p, a in zip(prompt, answer)])
    scores = torch.linspace(-3.0, 4.0, VOCAB).repeat(2, 1)
    scores[:, ANSWER] = 2.0
    scores[:, 9] = -1.0
    out = AnswerLogitsProcessor(policy, prompt_width=5, stop_ids=[STOP])(input_ids, scores.clone())
    changed = (out != scores)
    for row in range(2):
        assert not changed[row, PROMPT_ONLY] and not changed[row, STOP]
        assert changed[row, ANSWER] or changed[row, 9]
        assert set(changed[row].nonzero().flatten().tolist()) <= {ANSWER, 9}
    assert torch.equal(out[0], penalize(scores[0], answer[0], policy, [STOP]))  # the server's per-row call


def test_penalty_arithmetic():
    logits = torch.tensor([2.0, -2.0, 1.0, 0.5])
    answer = [0, 1, 1, 3]
    rep = penalize(logits, answer, DecodingPolicy(repetition_penalty=2.0), [3])
    assert rep.tolist() == [1.0, -4.0, 1.0, 0.5]  # HF's formula on answer tokens; token 3 is a stop token
    off = DecodingPolicy(repetition_penalty=1.0)  # the default penalizes: switch it off to test one knob at a time
    freq = penalize(logits, answer, DecodingPolicy(repetition_penalty=1.0, frequency_penalty=0.5, presence_penalty=0.25), [])
    assert freq.tolist() == [2.0 - 0.5 - 0.25, -2.0 - 1.0 - 0.25, 1.0, 0.5 - 0.5 - 0.25]
    ngram = penalize(logits, [2, 0, 1, 2], DecodingPolicy(repetition_penalty=1.0, no_repeat_ngram_size=2), [])
    assert ngram[0] == float("-inf") and ngram[1:].tolist() == [-2.0, 1.0, 0.5]  # "2 0" exists: 0 after 2 banned
    assert penalize(logits, answer, off, []) is logits  # off: untouched
    assert logits.tolist() == [2.0, -2.0, 1.0, 0.5]  # never in place


def test_bad_policy_is_one_error_naming_every_problem():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="(?s)repetition_penalty.*frequency_penalty.*no_repeat_ngram_size"):
        DecodingPolicy(repetition_penalty=0, frequency_penalty=3, no_repeat_ngram_size=1)


def test_watch_fires_exactly_when_metrics_loops_first_says_true():
    rng = random.Random(0)
    fired = 0
    for _ in range(1500):
        alphabet = rng.choice(["甲乙", "甲乙丙。", "甲乙，\n", "甲乙丙丁。！"])
        pieces = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3)]
        text = pieces[0] + pieces[1] * rng.randint(1, 4) + pieces[2]  # loops of every period, and non-loops
        watch = RepetitionWatch()
        first = next((end for end in range(1, len(text) + 1) if watch.feed(text[:end])), None)
        assert first == next((end for end in range(1, len(text) + 1) if loops(text[:end])), None), text
        if first is not None:
            fired += 1
            kept = text[:watch.cut]
            assert not loops(kept) and text.startswith(kept)
            assert kept == "" or kept[-1] in "。！\n" or watch.cut == watch._spans[text[first - 10:first]][2]
    assert 300 < fired < 1400


def test_cut_keeps_one_copy_and_ends_at_a_sentence_end():
    intro, unit = "劳动合同到期不续签的，", "用人单位应当支付经济补偿。根据劳动合同法第四十六条规定。"
    looping = intro + unit * 3 + "用人单位"
    assert loops(looping)
    assert cut_repetition(looping) == intro + unit
    assert cut_repetition(intro + unit) is None
    # no sentence end before the loop: the first copy stays rather than nothing
    assert cut_repetition("我我我我我我我我我我" * 3) == "我" * 10


class _CharTokenizer:
    """One token per character (ids = code points): enough to drive TextStream without a model."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(map(chr, ids))


def test_stream_without_hold_hands_out_exactly_the_cut_answer():
    text = "离婚需要什么材料？" + "需要结婚证和身份证。" * 4
    stream = TextStream(_CharTokenizer(), watch=RepetitionWatch())
    sent = ""
    for char in text:
        sent += stream.push(ord(char))
        if stream.stopped:
            break
    sent += stream.flush()
    assert stream.repeated and stream.stopped
    assert sent == stream.text == "离婚需要什么材料？需要结婚证和身份证。"


def test_stream_with_hold_streams_at_once_and_never_shows_three_copies():
    text = "根据法律规定，" + "公司应当支付赔偿金，" * 5
    stream = TextStream(_CharTokenizer(), watch=RepetitionWatch(), hold=200)
    pieces = []
    for char in text:
        pieces.append(stream.push(ord(char)))
        if stream.stopped:
            break
    assert pieces[0] == "根"  # no repetition pending: each character goes out at once
    shown = "".join(pieces) + stream.flush()
    assert stream.repeated and shown == stream.text and not loops(shown)


def test_decode_new_tokens_reports_repetition_and_not_ended(tiny_model_dir):
    from transformers import AutoTokenizer

    from lawtune.evaluation.generation import decode_new_tokens

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    stop = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    loaded = SimpleNamespace(tokenizer=tokenizer, chat=SimpleNamespace(stop_token_ids=[stop]))
    text = "合同无效。" + "用人单位应当支付工资！" * 6
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    looped = decode_new_tokens(loaded, ids + [stop], DecodingPolicy())
    assert looped.finish_reason == "repetition" and not looped.ended
    assert looped.text == "合同无效。用人单位应当支付工资！" and not loops(looped.text)
    assert looped.new_tokens < len(ids)  # generation would have stopped here
    plain = decode_new_tokens(loaded, ids + [stop], DecodingPolicy(repetition_stop=False))
    assert plain.finish_reason == "stop" and plain.ended and plain.text == text
    assert plain.new_tokens == len(ids) + 1
    budget = decode_new_tokens(loaded, ids[:5], DecodingPolicy())
    assert budget.finish_reason == "length" and not budget.ended


def _naive_stream(text: str, stops: list[str]) -> tuple[str, str | None]:
    """What a stop-string stream must hand out, the slow obvious way: (sent text, the stop that fired)."""
    for end in range(1, len(text) + 1):
        found = [(text.find(stop), stop) for stop in stops if stop in text[:end]]
        if found:
            at, stop = min(found)
            return text[:at], stop
    return text, None


def test_stop_strings_cut_at_the_first_occurrence_and_never_show_a_pending_prefix():
    rng = random.Random(7)
    for _ in range(400):
        text = "".join(rng.choice("ab问：。") for _ in range(rng.randint(0, 40)))
        stops = ["".join(rng.choice("ab问：") for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 4))]
        stream = TextStream(_CharTokenizer(), stops)
        shown = ""
        for char in text:
            piece = stream.push(ord(char))
            shown += piece
            # nothing shown may be the start of a stop string that could still complete
            assert not any(stop in shown for stop in stops), (text, stops, shown)
            if stream.stopped:
                break
        shown += stream.flush()
        expected, stop = _naive_stream(text, stops)
        assert shown == expected and stream.stopped == (stop is not None), (text, stops)


def test_long_stop_strings_cost_linear_time_in_the_answer():
    """Four stop strings as long as the answer used to cost the cube of its length on the engine thread
    (issue 25 item 3: 35 s → 122 s for a batch); now each character is matched once per stop string."""
    import time

    answer = "合同" * 1500  # 3,000 characters, one token each
    stops = ["同" * 2999 + "x", "合同" * 1499 + "合x", "y" * 3000, "合" + "z" * 2999]
    plain, started = TextStream(_CharTokenizer()), time.perf_counter()
    for char in answer:
        plain.push(ord(char))
    reference = time.perf_counter() - started
    stream, started = TextStream(_CharTokenizer(), stops), time.perf_counter()
    shown = "".join(stream.push(ord(char)) for char in answer) + stream.flush()
    elapsed = time.perf_counter() - started
    assert shown == answer and not stream.stopped
    assert elapsed < 40 * reference + 0.5, (elapsed, reference)


def test_watch_does_not_count_a_tool_call_block():
    """A call forced by its grammar repeats its key pattern (three overtime kinds): the watch must not cut it
    (it once left `<tool_call>` and nothing else, docs/tools.md s34); text around the block is still watched."""
    call = ('<tool_call>\n{"name": "overtime_pay", "arguments": {"monthly_wage": "15.6k", "weekday_hours": "十六个小时", '
            '"rest_day_hours": "8个小时", "holiday_hours": "8小时", "x_hours": "8个小时", "y_hours": "8个小时", '
            '"z_hours": "8个小时"}}\n</tool_call>')
    assert loops(call)  # as plain text it is a loop
    watch = RepetitionWatch()
    assert not any(watch.feed(call[:end]) for end in range(1, len(call) + 1))
    looping = call + "加班费是多少" * 8
    assert any(watch.feed(looping[:end]) for end in range(len(call) + 1, len(looping) + 1))
    assert watch.cut is not None and watch.cut >= len(call)
