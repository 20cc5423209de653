"""`lawtune prepare` end to end through the real console entry point, on the bundled sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lawtune.data.conversations import read_examples

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "legal_qa_sample.csv"


def lawtune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lawtune.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("sample") / "out"
    return out, lawtune("prepare", str(SAMPLE), "-o", str(out), "--system-prompt", "你是一名专业的中国律师。")


def test_sample_prepares_into_three_disjoint_splits(sample_out):
    out, result = sample_out
    assert result.returncode == 0, result.stderr
    assert "read 3,000 rows" in result.stdout and "p50" in result.stdout
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))

    questions: dict[str, set[str]] = {}
    for split in ("train", "dev", "test"):
        examples = list(read_examples(out / f"{split}.jsonl"))  # every line is valid conversations JSON
        assert len(examples) == report["splits"][split] > 0
        assert all(e.messages[0] == {"role": "system", "content": "你是一名专业的中国律师。"} for e in examples)
        questions[split] = {e.messages[1]["content"] for e in examples}
    assert not questions["train"] & questions["dev"]
    assert not questions["train"] & questions["test"]
    assert not questions["dev"] & questions["test"]

    assert report["rows_read"] == 3000
    assert report["rows_read"] == report["kept"] + report["dropped_total"] == report["kept"] + sum(report["dropped"].values())
    assert sum(report["splits"].values()) == report["kept"]
    assert report["sources"][0]["rows_read"] == 3000 and len(report["sources"][0]["sha256"]) == 64
    assert not list(out.glob(".prepare-*"))


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("问题,答案\n劳动合同,补偿\n", encoding="utf-8")
    result = lawtune("prepare", str(bad), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "missing column(s) title, reply" in result.stderr and "found '问题,答案'" in result.stderr


def test_bad_flag_value_is_one_line(tmp_path):
    result = lawtune("prepare", str(SAMPLE), "-o", str(tmp_path / "out"), "--is-best", "maybe")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--is-best:" in result.stderr  # the real flag


def test_help_has_an_example():
    result = lawtune("prepare", "--help")
    assert result.returncode == 0 and "lawtune prepare data/legal_qa_sample.csv -o out/" in result.stdout
