"""Deterministic train/dev/test assignment by a hash of the normalized question.

    from lawtune.data.split import bucket, assign
    split = assign(bucket("劳动合同到期不续签有补偿吗", seed=0), dev_ratio=0.05, test_ratio=0.05)

The same normalized question always lands in the same split (for a given seed), so no question is ever
shared between splits, and the assignment needs no memory: each row is placed as it streams by. On small
inputs pure hashing can leave a split empty; `rank_assign` then places the distinct questions by the rank
of their hash instead (still deterministic, still one split per question), which needs at least 3.
"""

from __future__ import annotations

from lawtune.data.cleaning import key_hash
from lawtune.errors import LawtuneError

SPLITS = ("train", "dev", "test")
MIN_QUESTIONS = 3  # one distinct question per split


def bucket(question: str, seed: int) -> int:
    """The 64-bit split hash of a question; seeds give independent splits."""
    return key_hash(str(seed), question)


def assign(value: int, dev_ratio: float, test_ratio: float) -> str:
    """test gets the lowest test_ratio of the hash range, dev the next dev_ratio, train the rest."""
    fraction = value / 2**64
    if fraction < test_ratio:
        return "test"
    if fraction < test_ratio + dev_ratio:
        return "dev"
    return "train"


def rank_assign(values: set[int], dev_ratio: float, test_ratio: float) -> dict[int, str]:
    """Split hash -> split, by rank: lowest hashes to test, then dev, the rest to train; none empty."""
    count = len(values)
    if count < MIN_QUESTIONS:
        raise LawtuneError(
            f"only {count} distinct question(s) survived filtering; train, dev and test need at least "
            f"{MIN_QUESTIONS}; add rows or relax the filters (--min-chars, --max-chars, --is-best, --no-dedupe)"
        )
    n_test = max(1, round(count * test_ratio))
    n_dev = max(1, round(count * dev_ratio))
    while n_test + n_dev > count - 1:  # train keeps at least one question
        if n_test >= n_dev:
            n_test -= 1
        else:
            n_dev -= 1
    ordered = sorted(values)
    placed = {value: "test" for value in ordered[:n_test]}
    placed.update({value: "dev" for value in ordered[n_test:n_test + n_dev]})
    placed.update({value: "train" for value in ordered[n_test + n_dev:]})
    return placed
