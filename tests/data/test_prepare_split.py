"""Splits: by question hash, deterministic, never empty, clear error when too small; atomic outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lawtune.data.prepare import run
from lawtune.data.split import rank_assign
from lawtune.errors import LawtuneError

HEADER = "title,question,reply,is_best\n"


def csv_with(tmp_path: Path, n_titles: int, answers_per_title: int = 1) -> Path:
    path = tmp_path / "qa.csv"
    rows = (f"第{t}号咨询问题内容,,第{t}号问题的第{a}个回答内容,1\n" for t in range(n_titles) for a in range(answers_per_title))
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def split_titles(out: Path) -> dict[str, set[str]]:
    return {
        split: {json.loads(line)["conversations"][0]["content"] for line in (out / f"{split}.jsonl").open(encoding="utf-8")}
        for split in ("train", "dev", "test")
    }


def test_same_question_never_in_two_splits(tmp_path):
    report = run([csv_with(tmp_path, 200, answers_per_title=3)], tmp_path / "out", seed=3)
    titles = split_titles(tmp_path / "out")
    assert not (titles["train"] & titles["dev"] or titles["train"] & titles["test"] or titles["dev"] & titles["test"])
    assert all(titles.values()) and report["kept"] == 600 and sum(report["splits"].values()) == 600
    assert all(count % 3 == 0 for count in report["splits"].values())  # all 3 answers of a title together


def test_split_is_deterministic_and_depends_on_the_seed(tmp_path):
    source = csv_with(tmp_path, 300)
    run([source], tmp_path / "a", seed=1)
    run([source], tmp_path / "b", seed=1)
    run([source], tmp_path / "c", seed=2)
    for split in ("train", "dev", "test"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    assert split_titles(tmp_path / "a")["test"] != split_titles(tmp_path / "c")["test"]


@pytest.mark.parametrize("n_titles", [3, 4, 7])
def test_small_inputs_fill_every_split(tmp_path, n_titles):
    report = run([csv_with(tmp_path, n_titles)], tmp_path / "out")
    assert min(report["splits"].values()) >= 1 and sum(report["splits"].values()) == n_titles
    titles = split_titles(tmp_path / "out")
    assert len(titles["train"] | titles["dev"] | titles["test"]) == n_titles


def test_too_few_questions_is_a_clear_error(tmp_path):
    with pytest.raises(LawtuneError, match=r"only 2 distinct question\(s\).*at least 3.*Read 4 rows, kept 4"):
        run([csv_with(tmp_path, 2, answers_per_title=2)], tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())  # no partial outputs, no temp folder


def test_rank_assign_keeps_train_non_empty_with_extreme_ratios():
    placed = rank_assign(set(range(3)), dev_ratio=0.49, test_ratio=0.49)
    assert sorted(placed.values()) == ["dev", "test", "train"]


def test_failed_run_leaves_previous_outputs_untouched(tmp_path):
    out = tmp_path / "out"
    run([csv_with(tmp_path, 50)], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    broken = tmp_path / "broken.json"
    broken.write_text('[{"instruction": "问题内容一", "output": "回答内容一"},\n{"instruction": ', encoding="utf-8")
    with pytest.raises(LawtuneError, match="invalid JSON array"):
        run([csv_with(tmp_path, 50), broken], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
