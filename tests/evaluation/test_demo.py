"""`lawtune demo --quick` end to end on the tiny model: prepare → (model folder) → train → compare."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from lawtune.cli import app
from lawtune.demo import CALL_ONLY_SHARE, TOOL_STAGE_ROWS, TOOL_STAGE_SHARES


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
    # each step ran in a process of its own; its peak printed as that process's plus the demo's own
    lines = result.output.split("memory (resident")[1].splitlines()
    for name in ("prepare", "import", "train", "compare"):
        line = next(line for line in lines if line.startswith(f"  {name}: peak "))
        total, child, parent = (float(number.replace(",", "")) for number in re.findall(r"[\d,]+(?= MiB|\)|\s\+)", line)[:3])
        assert child > 20 and 10 < parent < 2000 and abs(total - (child + parent)) <= 1, line
    assert any(line.startswith("  peak of the demo ") for line in lines)


def test_demo_with_tools_trains_a_tool_stage_from_the_qa_adapter_and_measures_it(tiny_model_dir, tmp_path):
    out = tmp_path / "demo-tools"
    result = CliRunner().invoke(app, ["demo", "--quick", "--tools", "--model", str(tiny_model_dir), "--out", str(out),
                                      "--max-steps", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    # the Q&A stage is the plain demo's; the tool stage starts from its adapter, on the tool stage's file
    assert "train-rag.jsonl" in (out / "run" / "config.yaml").read_text(encoding="utf-8")
    stage = (out / "run-tools" / "config.yaml").read_text(encoding="utf-8")
    assert "train-tools.jsonl" in stage and f"init_adapter: {out / 'run'}" in stage
    assert json.loads((out / "run-tools" / "run.json").read_text())["final_step"] == 2
    trained = [json.loads(line) for line in (out / "data" / "train-tools.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(trained) == TOOL_STAGE_ROWS
    kinds = [row["meta"].get("kind", "replay") for row in trained]
    assert all(kinds.count(kind) == round(part * TOOL_STAGE_ROWS) for kind, part in TOOL_STAGE_SHARES.items())
    # half of the tool conversations end at the call (no result, no answer); the others hold both
    tool_rows = [row for row in trained if row["meta"].get("kind") == "tool"]
    cut = [row for row in tool_rows if row["meta"].get("call_only")]
    assert len(cut) == round(CALL_ONLY_SHARE * len(tool_rows))
    assert all([turn["role"] for turn in row["conversations"]] == ["user", "assistant"]
               and row["conversations"][1]["tool_calls"] for row in cut)
    assert all(row["conversations"][-1]["role"] == "assistant" and row["conversations"][-2]["role"] == "tool"
               for row in tool_rows if row not in cut)
    # replayed first-stage rows, some shown two tool definitions and answered as before, without a call
    replay = [row for row in trained if "kind" not in row["meta"]]
    shown = [row for row in replay if "tools" in row]
    assert shown and all(len(row["tools"]) == 2 for row in shown) and not any("rag" in row["meta"] for row in shown)
    assert not any("tool_calls" in turn for row in replay for turn in row["conversations"])
    first_stage = set((out / "data" / "train-rag.jsonl").read_text(encoding="utf-8").splitlines())
    assert all(json.dumps(row, ensure_ascii=False) in first_stage for row in replay if "tools" not in row)
    # never a question of the held-out tool set
    held_out = {row["conversations"][0]["content"] for row in
                map(json.loads, (out / "tools" / "test.jsonl").read_text(encoding="utf-8").splitlines())}
    assert not held_out & {row["conversations"][0]["content"] for row in trained}
    report = out / "report"
    tuned = json.loads((report / "tuned" / "metrics.json").read_text(encoding="utf-8"))
    # the held-out tool questions were asked of both models, and the report shows their metrics
    assert tuned["tools"]["count"] == 4 and "tool_choice_pct" in tuned["metrics"]
    assert "tool_args_same_keys_pct" in tuned["metrics"]
    assert tuned["model"]["name"] == "run-tools" and tuned["model"]["adapter_path"].startswith(str(out / "run-tools"))
    assert "tool" in (report / "report.md").read_text(encoding="utf-8").lower()
