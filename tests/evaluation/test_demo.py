"""`lawtune demo --quick` end to end on the tiny model: prepare → (model folder) → train → compare."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lawtune.cli import app


def test_demo_quick_runs_end_to_end(tiny_model_dir, tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--model", str(tiny_model_dir), "--out", str(out),
                                      "--max-steps", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    for split in ("train", "dev", "test"):
        assert (out / "data" / f"{split}.jsonl").is_file()
    assert (out / "run" / "adapter" / "adapter_config.json").is_file()
    assert json.loads((out / "run" / "run.json").read_text())["final_step"] == 2
    report = out / "report"
    assert (report / "report.html").is_file() and (report / "report.md").is_file()
    tuned = json.loads((report / "tuned" / "metrics.json").read_text(encoding="utf-8"))
    assert tuned["data"]["count"] == 6 and tuned["generation"]["max_new_tokens"] == 24
    assert "report:" in result.output and "ROUGE-L" in result.output
    # the tool-use set: generated beside the Q&A splits, mixed into training, its test split measured (held out)
    run_info = json.loads((out / "run" / "run.json").read_text())
    assert "train-mix.jsonl" in json.dumps(run_info)
    assert tuned["tools"]["count"] == 4 and "tool_args_exact_pct" in tuned["metrics"]
    assert "right tool, exact arguments %" in (report / "report.md").read_text(encoding="utf-8")
    # each step's peak resident memory is printed (lawtune.memory)
    assert "memory (resident):\n  prepare: peak" in result.output and "\n  train: peak" in result.output
    assert "\n  compare: peak" in result.output and "\n  process peak" in result.output
