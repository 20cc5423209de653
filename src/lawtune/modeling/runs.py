"""The run folder: what `lawtune train` writes and every later command reads.

    RUN/
      run.json              how the run was made: base model (absolute path, imported name) + content hash,
                            template file, versions
      config.yaml           the resolved training config
      chat_template.jinja   the template used in training (reused by eval, infer, chat, serve)
      tokenizer/            the tokenizer used in training
      adapter/              the final LoRA adapter (always written at the end)
      best/                 the adapter of the checkpoint with the best dev metric (+ best.json)
      checkpoint-N/         resumable Trainer checkpoints (+ lawtune_complete.json once fully written)
      metrics.jsonl, loss_curve.png, tensorboard/
      eval/, compare/       default output folders of `lawtune eval` / `lawtune compare` on this run
      quality_gate.json     the verdict of the last gated `lawtune compare` (checked by `lawtune serve`)

Later commands pick `best/` when it exists, else `adapter/`. Every module names these files through the
constants below, and reads metrics.jsonl through `read_metrics` / `loss_points`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lawtune.errors import LawtuneError

RUN_INFO = "run.json"
TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_DIR = "tokenizer"
FINAL_ADAPTER_DIR = "adapter"
BEST_ADAPTER_DIR = "best"
BEST_INFO = "best.json"  # inside BEST_ADAPTER_DIR: step, metric and value of the best eval
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LOSS_CURVE = "loss_curve.png"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_PREFIX = "checkpoint-"  # + the global step
COMPLETE_MARKER = "lawtune_complete.json"  # inside a checkpoint the Trainer finished writing
EVAL_DIR = "eval"
COMPARE_DIR = "compare"
QUALITY_GATE = "quality_gate.json"
DEFAULT_MODEL_NAME = "gemma-3-270m"


def lawtune_home() -> Path:
    """Where imported models live: $LAWTUNE_HOME, else ~/.cache/lawtune."""
    return Path(os.environ.get("LAWTUNE_HOME") or Path.home() / ".cache" / "lawtune")


def models_dir() -> Path:
    return lawtune_home() / "models"


def is_run_dir(path: Path) -> bool:
    return (path / RUN_INFO).is_file()


@dataclass
class RunInfo:
    run_dir: Path
    base_model: Path
    base_model_sha256: str | None
    template: str

    @property
    def tokenizer_dir(self) -> Path:
        return self.run_dir / TOKENIZER_DIR

    def adapter_dir(self, which: str = "best") -> Path:
        """`best` falls back to the final adapter when no best checkpoint was recorded."""
        best = self.run_dir / BEST_ADAPTER_DIR
        final = self.run_dir / FINAL_ADAPTER_DIR
        if which == "best" and (best / "adapter_config.json").is_file():
            return best
        if (final / "adapter_config.json").is_file():
            return final
        raise LawtuneError(
            f"run {self.run_dir} has no finished adapter ({FINAL_ADAPTER_DIR}/ or {BEST_ADAPTER_DIR}/): "
            f"finish training with `lawtune train {self.run_dir / CONFIG_FILE} --resume auto`"
        )


def read_run(run_dir: str | Path) -> RunInfo:
    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
        template = (run_dir / TEMPLATE_FILE).read_text(encoding="utf-8")
        base = info["base_model"]
    except FileNotFoundError as error:
        raise LawtuneError(f"{run_dir} is not a complete lawtune run folder: {error.filename} is missing") from error
    except (json.JSONDecodeError, KeyError) as error:
        raise LawtuneError(f"{run_dir / RUN_INFO} is damaged ({error}); retrain or restore it") from error
    return RunInfo(run_dir, resolve_run_base(base), base.get("sha256"), template)


def base_model_record(model_dir: Path) -> dict:
    """How run.json names its base so that a copied or moved run still finds it: the absolute path, plus the
    name of the imported model when the base lives in the model cache (another machine imports it by name)."""
    model_dir = Path(model_dir).resolve()
    record: dict = {"path": str(model_dir)}
    if model_dir.parent == models_dir().resolve():
        record["name"] = model_dir.name
    return record


def base_model_reference(model_dir: Path) -> str:
    """What a run's adapter_config.json calls its base: the imported model's name, else the absolute path."""
    record = base_model_record(model_dir)
    return record.get("name", record["path"])


def resolve_run_base(base: dict) -> Path:
    """The base folder of a run on this machine: the imported model of that name in this machine's cache
    first (a run copied from another machine), else the recorded path. Runs written before paths were
    stored absolute may hold a relative path: that one is still read against the current directory."""
    name = base.get("name")
    if name and (models_dir() / name / "config.json").is_file():
        return models_dir() / name
    return Path(base["path"])


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every event of RUN/metrics.jsonl, in order; [] when there is none. A line cut by a kill is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def loss_points(run_dir: str | Path | None) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(train, dev) loss points (step, loss) from RUN/metrics.jsonl: the points of the loss curve.

    `loss` / `eval_loss` as the HF Trainer logs them (the end-of-training summary's `train_loss`, an average
    over the whole run, is not a point of the curve)."""
    train: list[tuple[float, float]] = []
    dev: list[tuple[float, float]] = []
    for event in read_metrics(run_dir) if run_dir else []:
        step = event.get("step")
        if step is None:
            continue
        for key, points in (("loss", train), ("eval_loss", dev)):
            if isinstance(event.get(key), (int, float)):
                points.append((float(step), float(event[key])))
    return train, dev


def resolve_model_path(spec: str | Path) -> Path:
    """A model spec → a local Hugging Face folder: a path, or the name of an imported model."""
    path = Path(spec)
    if path.is_dir():
        return path
    if str(spec) in ("default", DEFAULT_MODEL_NAME) or (models_dir() / str(spec)).is_dir():
        imported = models_dir() / (DEFAULT_MODEL_NAME if str(spec) == "default" else str(spec))
        if (imported / "config.json").is_file():
            return imported
        raise LawtuneError(
            f"model {spec!r} is not imported yet: run `lawtune model import` (looked in {imported})"
        )
    raise LawtuneError(
        f"model {spec!r} not found: give a run folder, a local Hugging Face model folder, or the name of a "
        "model brought in with `lawtune model import`"
    )
