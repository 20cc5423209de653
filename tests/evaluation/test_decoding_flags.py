"""The decoding flags of eval / compare / infer / chat, and what eval records about decoding.

    .venv/bin/pytest tests/evaluation/test_decoding_flags.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from lawtune.cli import app
from lawtune.modeling.decoding import DecodingPolicy


def test_flags_build_the_policy_and_default_to_it():
    from lawtune.modeling.decoding_options import decoding_options

    assert decoding_options(None, None, None, None, False, True, True, False, True) == DecodingPolicy()
    assert decoding_options(1.2, 0.3, None, 4, False, False, False, True, False) == DecodingPolicy(
        repetition_penalty=1.2, frequency_penalty=0.3, presence_penalty=DecodingPolicy().presence_penalty,
        no_repeat_ngram_size=4, repetition_stop=False, tool_figures=False, tool_result_figure=True,
        tool_said_required=False)
    assert not decoding_options(None, None, None, None, True, True, True, False, True).penalizes


def test_conflicting_or_bad_decoding_flags_are_one_line_errors(tiny_run_dir, qa_file):
    for flags, expected in ((["--no-repetition-control", "--repetition-penalty", "1.2"], "--repetition-penalty"),
                            (["--frequency-penalty", "3"], "--frequency-penalty: Input should be less than or equal to 2")):
        done = subprocess.run([sys.executable, "-m", "lawtune.cli", "eval", str(tiny_run_dir), "--data", str(qa_file),
                               *flags], capture_output=True, text=True)
        assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_eval_records_the_policy_and_each_finish_reason(tiny_run_dir, qa_file, tmp_path):
    result = CliRunner().invoke(app, ["eval", str(tiny_run_dir), "--data", str(qa_file), "--out", str(tmp_path),
                                      "--max-new-tokens", "40", "--no-mcq", "--repetition-penalty", "1.2",
                                      "--no-repetition-stop"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert record["generation"]["decoding"] == {**DecodingPolicy().record(), "repetition_penalty": 1.2,
                                                "repetition_stop": False}
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(row["finish_reason"] in ("stop", "length") for row in rows)  # the stop is off: never "repetition"
    assert all(row["ended"] == (row["finish_reason"] == "stop") for row in rows)
