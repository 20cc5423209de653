"""Metric functions against hand-computed values (ChatGLM / LLaMA-Factory convention)."""

from __future__ import annotations

import logging
import math

import jieba
import pytest

from lawtune.evaluation.metrics import bleu4, loops, rouge_f, score_pair, summarize

jieba.setLogLevel(logging.WARNING)


def test_bleu4_is_character_level_with_brevity_penalty():
    # every 1..4-gram of the prediction is in the reference: precisions are 1, only the brevity penalty
    # exp(1 - 5/4) applies
    assert bleu4("劳动合同", "劳动合同法") == pytest.approx(100 * math.exp(1 - 5 / 4))
    assert bleu4("劳动合同法", "劳动合同法") == pytest.approx(100.0)
    # 公司拖欠奖金 vs 公司拖欠工资: 1-gram 4/6, 2-gram 3/5, 3-gram 2/4, 4-gram 1/3, same length
    assert bleu4("公司拖欠奖金", "公司拖欠工资") == pytest.approx(100 * (4 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)


def test_rouge_uses_jieba_words_and_f_score():
    assert list(jieba.cut("公司拖欠奖金")) == ["公司", "拖欠", "奖金"]
    assert list(jieba.cut("公司拖欠工资")) == ["公司", "拖欠工资"]
    scores = rouge_f("公司拖欠奖金", "公司拖欠工资")
    # one shared word (公司): P = 1/3, R = 1/2, F = 2PR/(P+R) = 0.4; no shared bigram; LCS = 1 word
    assert scores["rouge-1"] == pytest.approx(40.0, abs=1e-4)
    assert scores["rouge-2"] == pytest.approx(0.0)
    assert scores["rouge-l"] == pytest.approx(40.0, abs=1e-4)
    assert rouge_f("劳动合同法", "劳动合同法")["rouge-l"] == pytest.approx(100.0, abs=1e-4)


@pytest.mark.parametrize("prediction", ["", "   ", "\n"])
def test_empty_prediction_scores_zero_and_never_raises(prediction):
    assert score_pair(prediction, "劳动合同法") == {"bleu-4": 0.0, "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_all_punctuation_prediction_scores_zero():
    assert score_pair("。。。！？", "劳动合同法规定了试用期") == {
        "bleu-4": pytest.approx(0.0), "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    # punctuation is a token in this convention: against a reference ending in "。" it earns a little
    scores = score_pair("。。。", "劳动合同法规定了试用期。")
    assert 0 < scores["rouge-1"] < 100 and scores["rouge-2"] == 0.0


def test_summary_counts_empty_predictions_in_the_mean():
    summary = summarize(["", "劳动合同法"], ["劳动合同法", "劳动合同法"], [False, True])
    assert summary["rouge-l"] == pytest.approx(50.0, abs=1e-4)
    assert summary["bleu-4"] == pytest.approx(50.0)
    assert summary["empty"] == 1 and summary["count"] == 2
    assert summary["ended_pct"] == 50.0


def test_loops_needs_a_10_char_span_three_times_without_overlap():
    unit = "劳动合同法第一条规定，"  # 11 characters
    assert loops(unit * 3)
    assert not loops(unit * 2)
    assert not loops("短句重复。" * 5)  # a 10-character span fits only twice without overlap
    assert loops("短句重复。" * 6)
    # period 9: a 10-character span recurs every 9 characters, so 3 non-overlapping copies need 46+ chars
    assert not loops("123456789" * 5)
    assert loops("123456789" * 6)
    summary = summarize([unit * 3, unit], [unit, unit], [False, False])
    assert summary["loops_pct"] == 50.0


def test_distribution_percentiles_by_hand():
    from lawtune.evaluation.metrics import distribution

    assert distribution([]) == {}
    assert distribution([4, 1, 3, 2, 5]) == {"mean": 3.0, "p10": 1.4, "p50": 3.0, "p90": 4.6}


def test_answer_budget_fits_the_references():
    from lawtune.evaluation.evaluate import answer_budget

    assert answer_budget([100] * 10) == 384  # never below the floor
    lengths = list(range(1, 1001))  # p95 = 951 tokens (+1 end token) → next multiple of 32
    assert answer_budget(lengths) == 960
