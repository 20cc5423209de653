"""Fixtures for evaluation tests: a small conversations file cut from the bundled LawBench 3-8 sample."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def qa_file(tmp_path_factory) -> Path:
    """Four real legal consultation questions with reference answers, in `conversations` JSONL."""
    lines = (REPO / "data" / "benchmarks" / "lawbench_3-8.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    path = tmp_path_factory.mktemp("eval-data") / "test.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
