"""`lawtune eval`, `compare`, `infer`, `chat` end to end on the tiny model (real CLI, real files)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evaluation_helpers import invoke

FAST = ["--max-new-tokens", "6", "--mcq-limit", "2"]


@pytest.fixture(scope="module")
def eval_dir(tiny_run_dir, qa_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "first"
    invoke("eval", tiny_run_dir, "--data", qa_file, "--out", out, *FAST)
    return out


def test_eval_writes_metrics_and_predictions(eval_dir, qa_file):
    record = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    assert record["data"]["count"] == 4
    assert record["generation"]["max_new_tokens"] == 6 and record["generation"]["do_sample"] is False
    assert set(record["metrics"]) >= {"bleu-4", "rouge-1", "rouge-2", "rouge-l", "ended_pct", "loops_pct"}
    assert record["loss"]["eval_loss"] > 0 and set(record["mcq"]) == {"jecqa_single", "lawbench_1-2"}
    rows = [json.loads(line) for line in (eval_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    references = [json.loads(line)["conversations"][-1]["content"] for line in qa_file.read_text(encoding="utf-8").splitlines()]
    assert [row["reference"] for row in rows] == references  # input order kept despite length-sorted batches
    assert all(row["new_tokens"] <= 6 for row in rows)
    assert all(0 <= row["stop_prob"] <= 1 and row["length_ratio"] == round(row["answer_tokens"] / row["reference_tokens"], 4)
               for row in rows)
    assert set(record["metrics"]["stop_prob"]) == {"mean", "p10", "p50", "p90"}


def test_eval_default_budget_fits_the_references(tiny_run_dir, qa_file, tmp_path):
    invoke("eval", tiny_run_dir, "--data", qa_file, "--out", tmp_path, "--no-mcq", "--limit", "1")
    record = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert record["generation"]["max_new_tokens"] >= 384


def test_eval_twice_gives_identical_metrics(eval_dir, tiny_run_dir, qa_file, tmp_path):
    invoke("eval", tiny_run_dir, "--data", qa_file, "--out", tmp_path, *FAST)
    first = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    second = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    for record in (first, second):
        record.pop("timing")
    assert first == second
    assert (eval_dir / "predictions.jsonl").read_bytes() == (tmp_path / "predictions.jsonl").read_bytes()


def test_compare_writes_markdown_and_html_reports(tiny_run_dir, qa_file, tmp_path):
    result = invoke("compare", "base", tiny_run_dir, "--data", qa_file, "--out", tmp_path, *FAST, "--limit", "3")
    assert "ROUGE-L" in result.output
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    question = json.loads(qa_file.read_text(encoding="utf-8").splitlines()[0])["conversations"][0]["content"]
    for text in (markdown, html):
        assert "微调前" in text and "微调后" in text and "ROUGE-L" in text
        assert "stop probability at the reference end" in text
    assert (tmp_path / "distributions.png").stat().st_size > 0
    assert question[:20] in html and question[:20] in markdown
    assert 'src="data:image/png;base64,' in html and "<script" not in html  # self-contained, no JS
    base = json.loads((tmp_path / "base" / "metrics.json").read_text(encoding="utf-8"))
    tuned = json.loads((tmp_path / "tuned" / "metrics.json").read_text(encoding="utf-8"))
    assert base["generation"] == tuned["generation"]
    assert base["model"]["adapter_path"] is None and tuned["model"]["adapter_path"]


def test_infer_is_deterministic_and_sampling_is_seeded(tiny_run_dir):
    from lawtune.evaluation.generation import GenerationSettings
    from lawtune.evaluation.infer import infer

    settings = GenerationSettings(max_new_tokens=12)
    prompt = "劳动合同到期不续签有补偿吗？"
    first = infer(str(tiny_run_dir), prompt, settings)
    assert first == infer(str(tiny_run_dir), prompt, settings)
    sampled = [infer(str(tiny_run_dir), prompt, GenerationSettings(max_new_tokens=12, do_sample=True, seed=s)) for s in (1, 1)]
    assert sampled[0] == sampled[1]  # sampling is opt-in and seeded
    result = invoke("infer", tiny_run_dir, "--prompt", prompt, "--max-new-tokens", "12")
    assert first in result.output
    base = infer(str(tiny_run_dir), prompt, settings, base_only=True)
    assert base == infer(str(tiny_run_dir), prompt, settings, base_only=True)


def test_chat_keeps_history(tiny_run_dir):
    from lawtune.evaluation.generation import GenerationSettings
    from lawtune.evaluation.infer import chat_loop

    questions = iter(["离婚需要什么材料？", "那孩子归谁？", "/reset", "工伤怎么认定？", "/exit"])
    history = chat_loop(str(tiny_run_dir), GenerationSettings(max_new_tokens=4), read=lambda _: next(questions),
                        write=lambda *a, **k: None)
    assert [m["role"] for m in history] == ["user", "assistant"]  # /reset dropped the first two turns
    assert history[0]["content"] == "工伤怎么认定？"


def test_bad_inputs_are_one_line_errors(tiny_run_dir, qa_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": [{"role": "user", "content": "只有问题"}]}\n', encoding="utf-8")
    for args, expected in ((["eval", tiny_run_dir, "--data", tmp_path / "missing.jsonl"], "no such file"),
                           (["eval", tiny_run_dir, "--data", bad], "bad.jsonl:1"),
                           (["compare", "base", tmp_path, "--data", bad], "not a run folder"),
                           (["eval", tiny_run_dir, "--data", qa_file, "--mcq", "nope"], "MCQ set 'nope' not found")):
        done = subprocess.run([sys.executable, "-m", "lawtune.cli", *map(str, args)], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr
