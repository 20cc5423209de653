"""The compare quality gate: thresholds checked against measured numbers, verdict recorded, exit status."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lawtune.cli import app
from lawtune.evaluation.gate import Gate, read_verdict
from lawtune.modeling.runs import QUALITY_GATE


def _record(rouge_l, ended, loops, mcq):
    return {"metrics": {"rouge-l": rouge_l, "ended_pct": ended, "loops_pct": loops},
            "mcq": {"jecqa_single": {"accuracy": mcq}}}


def test_each_threshold_checks_its_number():
    base, tuned = _record(10.0, 0.0, 90.0, 30.0), _record(17.0, 60.0, 25.0, 27.0)
    verdict = Gate(min_rouge_gain=6, min_ended_pct=50, max_loops_pct=20, max_mcq_drop=2).check(base, tuned)
    assert [(c["check"], c["passed"]) for c in verdict["checks"]] == [
        ("ROUGE-L gain ≥", True), ("ended on its own % ≥", True), ("looping answers % ≤", False),
        ("MCQ jecqa_single drop ≤", False)]
    assert verdict["passed"] is False and verdict["checks"][3]["value"] == 3.0
    assert Gate(min_rouge_gain=6).check(base, tuned)["passed"] is True
    assert not Gate().active


def test_compare_records_a_failed_gate_and_exits_non_zero(tiny_run_dir, qa_file, tmp_path):
    result = CliRunner().invoke(app, ["compare", "base", str(tiny_run_dir), "--data", str(qa_file), "--out", str(tmp_path),
                                      "--max-new-tokens", "4", "--no-mcq", "--limit", "2", "--min-rouge-gain", "1000"])
    assert result.exit_code == 1, result.output
    assert "quality gate FAILED" in result.output
    verdict = read_verdict(tiny_run_dir)
    assert verdict["passed"] is False and verdict["thresholds"] == {"min_rouge_gain": 1000.0}
    assert "Quality gate: FAILED" in (tmp_path / "report.md").read_text(encoding="utf-8")
    (tiny_run_dir / QUALITY_GATE).unlink()  # the run fixture is shared: leave it as it was
    assert json.loads((tmp_path / "tuned" / "metrics.json").read_text(encoding="utf-8"))["data"]["count"] == 2


def test_serve_refuses_a_run_that_failed_its_gate_unless_forced(tmp_path, capsys):
    import pytest

    from lawtune.errors import LawtuneError
    from lawtune.evaluation.gate import write_verdict
    from lawtune.serving.cli import _check_quality_gate

    verdict = Gate(max_loops_pct=10).check(_record(10, 0, 5, 30), _record(20, 90, 40, 30))
    write_verdict(tmp_path, verdict)
    with pytest.raises(LawtuneError, match=r"(?s)failed its quality gate.*looping answers % ≤ 10: 40.*--force"):
        _check_quality_gate(tmp_path, force=False)
    _check_quality_gate(tmp_path, force=True)  # serves, with a loud warning
    assert "WARNING: serving" in capsys.readouterr().err
    write_verdict(tmp_path, Gate(max_loops_pct=50).check(_record(10, 0, 5, 30), _record(20, 90, 40, 30)))
    _check_quality_gate(tmp_path, force=False)  # passed: nothing to say
