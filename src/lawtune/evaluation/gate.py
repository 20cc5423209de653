"""The quality gate of `lawtune compare`: serve a tuned model only once it measurably beats its base.

    gate = Gate(min_rouge_gain=6, min_ended_pct=40, max_loops_pct=20, max_mcq_drop=2)
    verdict = gate.check(base_record, tuned_record)   # {"passed": bool, "checks": [...], "thresholds": {...}}
    write_verdict(run_dir, verdict)                   # RUN/quality_gate.json, read by `lawtune serve`

The tutorial this product replaces says to serve once validation shows the effect meets a percentage; the
gate makes that a recorded, machine-checked decision. Only the thresholds a user sets are checked; each check
records the measured value next to its limit, so a failed gate says exactly what fell short.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lawtune.fsutil import atomic_write_json
from lawtune.modeling.runs import QUALITY_GATE



@dataclass(frozen=True)
class Gate:
    min_rouge_gain: float | None = None  # tuned ROUGE-L minus base ROUGE-L, points
    min_ended_pct: float | None = None  # tuned answers that end on their own, %
    max_loops_pct: float | None = None  # tuned answers that loop, %
    max_mcq_drop: float | None = None  # base minus tuned accuracy on each MCQ set, points
    # tool use (a compare with --tool-data; lawtune.evaluation.tool_eval), tuned model, %
    min_tool_choice: float | None = None  # tool questions whose first call names the right tool
    min_tool_args_exact: float | None = None  # ... with exactly the right arguments
    min_tool_figure: float | None = None  # tool questions whose final answer holds the right figure
    min_no_tool: float | None = None  # questions needing no tool answered without a call

    @property
    def active(self) -> bool:
        return any(value is not None for value in asdict(self).values())

    def check(self, base: dict[str, Any], tuned: dict[str, Any]) -> dict[str, Any]:
        """Every set threshold against the two compare records."""
        checks = []

        def add(name: str, value: float, limit: float, ok: bool) -> None:
            checks.append({"check": name, "value": round(value, 2), "limit": limit, "passed": ok})

        b, t = base["metrics"], tuned["metrics"]
        text_checks = (("ROUGE-L gain ≥", self.min_rouge_gain), ("ended on its own % ≥", self.min_ended_pct),
                       ("looping answers % ≤", self.max_loops_pct))
        if "rouge-l" not in t:  # a compare on a tool set alone measured no text answers: say so, fail
            checks += [{"check": f"{name} (not measured: --data is a tool set)", "value": None, "limit": limit,
                        "passed": False} for name, limit in text_checks if limit is not None]
        else:
            if self.min_rouge_gain is not None:
                gain = t["rouge-l"] - b["rouge-l"]
                add("ROUGE-L gain ≥", gain, self.min_rouge_gain, gain >= self.min_rouge_gain)
            if self.min_ended_pct is not None:
                add("ended on its own % ≥", t["ended_pct"], self.min_ended_pct, t["ended_pct"] >= self.min_ended_pct)
            if self.max_loops_pct is not None:
                add("looping answers % ≤", t["loops_pct"], self.max_loops_pct, t["loops_pct"] <= self.max_loops_pct)
        if self.max_mcq_drop is not None:
            for name, result in base.get("mcq", {}).items():
                if name in tuned.get("mcq", {}):
                    drop = result["accuracy"] - tuned["mcq"][name]["accuracy"]
                    add(f"MCQ {name} drop ≤", drop, self.max_mcq_drop, drop <= self.max_mcq_drop)
        for key, limit, label in (("tool_choice_pct", self.min_tool_choice, "right tool chosen % ≥"),
                                  ("tool_args_exact_pct", self.min_tool_args_exact, "right tool, exact arguments % ≥"),
                                  ("tool_figure_pct", self.min_tool_figure, "final answer holds the right figure % ≥"),
                                  ("no_tool_pct", self.min_no_tool, "no-tool questions without a call % ≥")):
            if limit is None:
                continue
            if key not in t:  # asked for a tool threshold without a tool set: fail, saying what is missing
                checks.append({"check": f"{label} (not measured: give --tool-data)", "value": None, "limit": limit,
                               "passed": False})
                continue
            add(label, t[key], limit, t[key] >= limit)
        return {"passed": all(c["passed"] for c in checks), "checks": checks,
                "thresholds": {k: v for k, v in asdict(self).items() if v is not None}}


def write_verdict(run_dir: Path, verdict: dict[str, Any], report: Path | None = None) -> Path:
    path = Path(run_dir) / QUALITY_GATE
    atomic_write_json(path, {**verdict, "report": str(report) if report else None})
    return path


def read_verdict(run_dir: Path) -> dict[str, Any] | None:
    """The last gated compare's verdict for this run, or None when no compare set a threshold."""
    path = Path(run_dir) / QUALITY_GATE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"passed": False, "checks": [], "error": f"{path} is unreadable"}


def describe(verdict: dict[str, Any]) -> str:
    """One line per check: '✓ ROUGE-L gain ≥ 6: 7.31' / '✗ looping answers % ≤ 20: 45.0'."""
    return "\n".join(f"{'✓' if c['passed'] else '✗'} {c['check']} {c['limit']}: {c['value']}" for c in verdict["checks"])
