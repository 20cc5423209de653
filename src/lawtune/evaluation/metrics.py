"""Text-generation metrics in the ChatGLM3 / LLaMA-Factory convention, plus two honesty checks.

    from lawtune.evaluation.metrics import score_pair, summarize
    score_pair("劳动合同", "劳动合同法")      # {"bleu-4": 77.88, "rouge-1": ..., "rouge-2": ..., "rouge-l": ...}
    summarize(predictions, references, ended) # means over samples + ended/loop shares

The convention (so our numbers line up with published ChatGLM/LLaMA-Factory ones):
- ROUGE-1/2/L: both texts segmented with jieba, joined with spaces, scored by `rouge_chinese.Rouge`;
  the F-score ×100.
- BLEU-4: character-level `nltk` sentence BLEU with smoothing method3, ×100.
- The reported value is the mean of per-sample scores. An empty (or whitespace-only) prediction scores 0
  on every metric and is counted in the mean; it never raises (the tutorial's script crashed on it).

Two more shares, because small models loop and may never stop:
- `ended`: share of answers that emitted their end-of-turn token within the token budget.
- `loops`: share of answers in which some span of 10+ characters occurs 3+ times (non-overlapping).

`distribution(values)` summarizes a per-answer quantity (length ratio, stop probability) by its mean and
10th/50th/90th percentiles, because a mean alone hides a model that stops half its answers at once and
never stops the other half.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

# one definition of a loop: the repetition stop (lawtune.modeling.decoding) ends answers by the same rule
from lawtune.modeling.decoding import LOOP_REPEATS, LOOP_SPAN_CHARS
METRIC_NAMES = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")


def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # jieba prints its dictionary-loading chatter at INFO
    return jieba


def rouge_f(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-scores ×100 of one pair; 0 when either side has no token after segmentation."""
    jieba = _jieba()
    hypothesis = " ".join(jieba.cut(prediction))
    ref = " ".join(jieba.cut(reference))
    if not hypothesis.split() or not ref.split():
        return {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    from rouge_chinese import Rouge

    scores = Rouge().get_scores(hypothesis, ref)[0]
    return {name: scores[name]["f"] * 100 for name in ("rouge-1", "rouge-2", "rouge-l")}


def bleu4(prediction: str, reference: str) -> float:
    """Character-level BLEU-4 ×100 with nltk smoothing method3; 0 for an empty prediction."""
    if not prediction.strip() or not reference.strip():
        return 0.0
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3) * 100


def score_pair(prediction: str, reference: str) -> dict[str, float]:
    """All four metrics for one prediction against its reference."""
    return {"bleu-4": bleu4(prediction, reference), **rouge_f(prediction, reference)}


def loops(text: str, span: int = LOOP_SPAN_CHARS, repeats: int = LOOP_REPEATS) -> bool:
    """True when some span of `span`+ characters occurs `repeats`+ times without overlapping.

    Checking spans of exactly `span` characters is enough: a longer repeated span repeats its prefix.
    """
    seen: set[str] = set()
    for start in range(len(text) - span + 1):
        piece = text[start:start + span]
        if piece in seen:
            continue
        seen.add(piece)
        if text.count(piece) >= repeats:  # str.count counts non-overlapping occurrences
            return True
    return False


def summarize(predictions: Sequence[str], references: Sequence[str], ended: Sequence[bool]) -> dict[str, float]:
    """Mean per-sample metrics (×100) and the ended/loop shares (in %) over a whole set."""
    if not (len(predictions) == len(references) == len(ended)):
        raise ValueError("predictions, references and ended must have the same length")
    count = len(predictions)
    if count == 0:
        return {**{name: 0.0 for name in METRIC_NAMES}, "ended_pct": 0.0, "loops_pct": 0.0, "count": 0}
    totals = dict.fromkeys(METRIC_NAMES, 0.0)
    for prediction, reference in zip(predictions, references):
        for name, value in score_pair(prediction, reference).items():
            totals[name] += value
    summary: dict[str, float] = {name: round(total / count, 4) for name, total in totals.items()}
    summary["ended_pct"] = round(100 * sum(bool(e) for e in ended) / count, 2)
    summary["loops_pct"] = round(100 * sum(loops(p) for p in predictions) / count, 2)
    summary["empty"] = sum(1 for p in predictions if not p.strip())
    summary["count"] = count
    return summary


def distribution(values: Sequence[float]) -> dict[str, float]:
    """Mean and 10th/50th/90th percentiles (linear interpolation) of a list of numbers; {} when empty."""
    data = sorted(float(v) for v in values)
    if not data:
        return {}

    def percentile(q: float) -> float:
        position = (len(data) - 1) * q
        low = int(position)
        high = min(low + 1, len(data) - 1)
        return data[low] + (data[high] - data[low]) * (position - low)

    return {"mean": round(sum(data) / len(data), 4), "p10": round(percentile(0.1), 4),
            "p50": round(percentile(0.5), 4), "p90": round(percentile(0.9), 4)}
