"""Which checkpoint to resume from, and tidying a run folder before training starts.

    start = plan_resume(run_dir, "auto")     # Path of the newest *complete* checkpoint, or None
    tidy_run_dir(run_dir, start)            # drop half-written / stale checkpoints, trim metrics.jsonl

`resume` is `auto` (newest complete checkpoint, else a fresh start), `none` (always start over; the old
checkpoints, adapters and logs of this run folder are removed) or a step number (that checkpoint, which
must be complete). A checkpoint is complete when `lawtune_complete.json` is in it (written by
`CheckpointMarker` after the Trainer finished the folder), so a folder cut short by SIGKILL is never used.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from lawtune.errors import LawtuneError
from lawtune.fsutil import atomic_write_text
from lawtune.modeling.runs import (BEST_ADAPTER_DIR, BEST_INFO, CHECKPOINT_PREFIX, COMPLETE_MARKER, FINAL_ADAPTER_DIR,
                                   LOSS_CURVE, METRICS_FILE, RUN_INFO, TENSORBOARD_DIR)

CHECKPOINT = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
# What a fresh start removes from an earlier run in the same folder.
FRESH_START_REMOVES = (BEST_ADAPTER_DIR, FINAL_ADAPTER_DIR, METRICS_FILE, TENSORBOARD_DIR, LOSS_CURVE)


def checkpoints(run_dir: Path) -> list[tuple[int, Path, bool]]:
    """(step, folder, complete) for every checkpoint-N folder, by step."""
    found = []
    if Path(run_dir).is_dir():
        for child in Path(run_dir).iterdir():
            match = CHECKPOINT.match(child.name)
            if match and child.is_dir():
                found.append((int(match.group(1)), child, (child / COMPLETE_MARKER).is_file()))
    return sorted(found)


def plan_resume(run_dir: Path, resume: str) -> Path | None:
    run_dir = Path(run_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / RUN_INFO).is_file() and not checkpoints(run_dir):
        raise LawtuneError(
            f"output_dir {run_dir} already holds files that are not a lawtune run; "
            "pick another training_args.output_dir (e.g. output_dir=runs/new)"
        )
    complete = [(step, path) for step, path, ok in checkpoints(run_dir) if ok]
    if resume == "none":
        return None
    if resume == "auto":
        return complete[-1][1] if complete else None
    if not resume.isdigit():
        raise LawtuneError(f"--resume {resume!r} is not auto, none or a step number")
    for step, path in complete:
        if step == int(resume):
            return path
    steps = ", ".join(str(step) for step, _ in complete) or "none"
    raise LawtuneError(f"no complete {CHECKPOINT_PREFIX}{resume} in {run_dir} (complete checkpoints: {steps}); use --resume auto")


def tidy_run_dir(run_dir: Path, start: Path | None) -> None:
    """Remove what the coming run would otherwise trip over (main process only)."""
    run_dir = Path(run_dir)
    start_step = int(CHECKPOINT.match(start.name).group(1)) if start else 0
    for step, path, ok in checkpoints(run_dir):
        if not ok or step > start_step:  # half-written, or from a future this run will redo
            shutil.rmtree(path, ignore_errors=True)
    if start is None:
        for name in FRESH_START_REMOVES:
            target = run_dir / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        return
    _trim_metrics(run_dir / METRICS_FILE, start_step)
    best = run_dir / BEST_ADAPTER_DIR / BEST_INFO
    if best.is_file() and json.loads(best.read_text(encoding="utf-8")).get("step", 0) > start_step:
        shutil.rmtree(run_dir / BEST_ADAPTER_DIR, ignore_errors=True)


def _trim_metrics(path: Path, last_step: int) -> None:
    """Keep only events up to the resumed step, so the resumed run does not log them twice."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    atomic_write_text(path, "".join(line + "\n" for line in kept))
