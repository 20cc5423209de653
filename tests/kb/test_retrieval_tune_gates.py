"""benchmarks/kb_retrieval_tune.py's session-33 law-stage gates (CaseKnnLaws) on a hand-made question memory:
which neighbours vote, when the stage acts, and the probabilities it gives."""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import kb_retrieval_tune as tune  # noqa: E402

CIVIL, CRIMINAL, LABOUR = "民法典", "刑法", "劳动合同法"


class Memory:
    """The parts of a DenseIndex the gates read: unit memory rows, their articles' keys, which rows are exam cases."""

    def __init__(self, rows, laws, case):
        self.memory = np.array(rows, np.float32)
        self.memory /= np.linalg.norm(self.memory, axis=1, keepdims=True)
        self.memory_keys = [[(law, 1, 0)] for law in laws]
        self.memory_case = np.array(case, bool)


# two consultations near axis 0 (民法典, 劳动合同法), two exam cases near axis 1 (刑法)
MEMORY = Memory([[1, 0.1], [1, 0.2], [0.1, 1], [0.2, 1]], [CIVIL, LABOUR, CRIMINAL, CRIMINAL],
                [False, False, True, True])
CONSULTATION = np.array([1.0, 0.0], np.float32)
CASE = np.array([0.0, 1.0], np.float32)


def gate(**options):
    settings = dict(m=2, p=1.0, source_only=False, gate=0.0, absolute=False, agree=0.0)
    settings.update(options)
    return tune.CaseKnnLaws(MEMORY, **settings)


def test_case_share_gate_acts_on_cases_only():
    laws = gate(gate=0.5)
    assert laws.probabilities(CONSULTATION) == {}
    assert laws.probabilities(CASE) == {CRIMINAL: pytest.approx(1.0)}
    assert (laws.gated, laws.asked) == (1, 2)


def test_only_exam_cases_vote():
    # the consultation's two nearest rows are consultations, but with source_only only the exam cases vote
    assert set(gate(source_only=True).probabilities(CONSULTATION)) == {CRIMINAL}
    assert set(gate().probabilities(CONSULTATION)) == {CIVIL, LABOUR}


def test_agreement_gate_and_absolute_mass():
    # the consultation's neighbours split between two laws (each ~half the mass): no lift at 60 % agreement
    laws = gate(agree=0.6)
    assert laws.probabilities(CONSULTATION) == {}
    assert laws.probabilities(CASE) == {CRIMINAL: pytest.approx(1.0)}
    # absolute: the mass ÷ m, below 1 when the neighbours are not identical to the question
    mass = float(MEMORY.memory[2:] @ CASE @ np.ones(2))
    assert gate(absolute=True).probabilities(CASE)[CRIMINAL] == pytest.approx(mass / 2)
    assert mass / 2 < 1.0
