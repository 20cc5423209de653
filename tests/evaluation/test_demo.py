"""`lawtune demo --quick` end to end on the tiny model: prepare → (model folder) → train → compare."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lawtune.cli import app
from lawtune.demo import TOOL_KINDS, TOOL_SHARE


def test_demo_quick_runs_end_to_end(tiny_model_dir, tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--model", str(tiny_model_dir), "--out", str(out),
                                      "--max-steps", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    for split in ("train", "dev", "test"):
        assert (out / "data" / f"{split}.jsonl").is_file()
    # training ran on the sample's train split plus RAG-format rows of the article-cited consultations (20 %)
    plain = (out / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    mixed = [json.loads(line) for line in (out / "data" / "train-rag.jsonl").read_text(encoding="utf-8").splitlines()]
    rag = [row for row in mixed if "rag" in row["meta"]]
    assert [json.dumps(row, ensure_ascii=False) for row in mixed[:len(plain)]] == plain
    assert len(mixed) == len(plain) + len(rag) and abs(len(rag) / len(mixed) - 0.2) < 0.01
    assert {row["meta"]["rag"]["case"] for row in rag} == {"retrieved", "injected", "left_out"}
    assert all(row["conversations"][0]["role"] == "system" for row in rag)
    assert "train-rag.jsonl" in (out / "run" / "config.yaml").read_text(encoding="utf-8")
    assert not (out / "tools").exists()  # tool rows only with --tools
    assert (out / "run" / "adapter" / "adapter_config.json").is_file()
    assert json.loads((out / "run" / "run.json").read_text())["final_step"] == 2
    report = out / "report"
    assert (report / "report.html").is_file() and (report / "report.md").is_file()
    tuned = json.loads((report / "tuned" / "metrics.json").read_text(encoding="utf-8"))
    assert tuned["data"]["count"] == 6 and tuned["generation"]["max_new_tokens"] == 24
    assert "tools" not in tuned
    assert "report:" in result.output and "ROUGE-L" in result.output
    # each step's peak resident memory is printed (lawtune.memory)
    assert "memory (resident):\n  prepare: peak" in result.output and "\n  train: peak" in result.output
    assert "\n  compare: peak" in result.output and "\n  process peak" in result.output


def test_demo_with_tools_trains_on_tool_rows_and_measures_them(tiny_model_dir, tmp_path):
    out = tmp_path / "demo-tools"
    result = CliRunner().invoke(app, ["demo", "--quick", "--tools", "--model", str(tiny_model_dir), "--out", str(out),
                                      "--max-steps", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    mixed = [json.loads(line) for line in (out / "data" / "train-rag.jsonl").read_text(encoding="utf-8").splitlines()]
    # the RAG mix plus tool-use rows of the generated tool set (demo.TOOL_SHARE), never of its held-out test split
    trained = [json.loads(line) for line in (out / "data" / "train-mix.jsonl").read_text(encoding="utf-8").splitlines()]
    tool_rows = [row for row in trained if "kind" in row["meta"]]
    assert len(trained) == len(mixed) + len(tool_rows) and abs(len(tool_rows) / len(trained) - TOOL_SHARE) < 0.01
    # a share of the plain Q&A rows is shown two tool definitions and answered as before, without a call
    shown = [row for row in trained if "tools" in row and "kind" not in row["meta"]]
    plain = [row for row in mixed if "rag" not in row["meta"]]
    assert 0.15 < len(shown) / len(plain) < 0.35 and all(len(row["tools"]) == 2 for row in shown)
    assert not any("tool_calls" in turn for row in shown for turn in row["conversations"])
    assert not any("rag" in row["meta"] for row in shown)
    kinds = [row["meta"]["kind"] for row in tool_rows]
    assert all(abs(kinds.count(kind) / len(kinds) - part) < 0.01 for kind, part in TOOL_KINDS.items())
    held_out = {row["conversations"][0]["content"] for row in
                map(json.loads, (out / "tools" / "test.jsonl").read_text(encoding="utf-8").splitlines())}
    assert not held_out & {row["conversations"][0]["content"] for row in tool_rows}
    assert "train-mix.jsonl" in (out / "run" / "config.yaml").read_text(encoding="utf-8")
    report = out / "report"
    tuned = json.loads((report / "tuned" / "metrics.json").read_text(encoding="utf-8"))
    # the held-out tool questions were asked of both models, and the report shows their metrics
    assert tuned["tools"]["count"] == 4 and "tool_choice_pct" in tuned["metrics"]
    assert "tool" in (report / "report.md").read_text(encoding="utf-8").lower()
