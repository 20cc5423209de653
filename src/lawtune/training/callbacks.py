"""Trainer callbacks: metrics.jsonl, best adapter + early stopping, checkpoint completion markers, progress.

All file writes happen on the main process only and go through `lawtune.fsutil` (atomic). The Trainer
writes `checkpoint-N/` file by file, so a SIGKILL can leave a half-written one; `CheckpointMarker` writes
`checkpoint-N/lawtune_complete.json` after the Trainer has finished the folder, and resume only ever
picks a checkpoint that has it (see `lawtune.training.resume`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from lawtune.fsutil import atomic_dir, atomic_write_json
from lawtune.modeling.runs import (BEST_ADAPTER_DIR, BEST_INFO, CHECKPOINT_PREFIX, COMPLETE_MARKER, METRICS_FILE,
                                   read_metrics)


class MetricsLog(TrainerCallback):
    """Append every log / eval event to RUN/metrics.jsonl as one JSON object with its step."""

    def __init__(self, run_dir: Path, token_counter: Any):
        self.path = Path(run_dir) / METRICS_FILE
        self.token_counter = token_counter
        self.start = time.monotonic()
        self.cpu_start = time.process_time()

    def on_train_begin(self, args, state, control, **kwargs):
        # CPU seconds of this process since training began: a steadier measure of work than wall time on a
        # shared machine (the throughput benchmark reports both).
        self.cpu_start = time.process_time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        event = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs,
                 "supervised_tokens": self.token_counter.tokens * max(args.world_size, 1),
                 "elapsed_s": round(time.monotonic() - self.start, 1),
                 "cpu_s": round(time.process_time() - self.cpu_start, 1)}
        with self.path.open("a", encoding="utf-8") as handle:  # append-only; one whole line per write
            handle.write(json.dumps(event, ensure_ascii=False) + "\n")


class BestAdapter(TrainerCallback):
    """After each eval, save the adapter to RUN/best/ when the dev metric improved; stop after `patience`."""

    def __init__(self, run_dir: Path, metric: str, greater_is_better: bool, patience: int | None):
        self.run_dir = Path(run_dir)
        self.metric = metric if metric.startswith("eval_") else f"eval_{metric}"
        self.greater = greater_is_better
        self.patience = patience
        self.best_value, self.best_step, self.bad_evals = _restore_best(self.run_dir, self.metric, self.greater)

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.greater else value < self.best_value

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is None or math.isnan(value):
            return
        if self._better(value):
            self.best_value, self.best_step, self.bad_evals = value, state.global_step, 0
            if state.is_world_process_zero:
                with atomic_dir(self.run_dir / BEST_ADAPTER_DIR) as tmp:
                    model.save_pretrained(tmp)
                    atomic_write_json(tmp / BEST_INFO, {"step": state.global_step, "metric": self.metric,
                                                        "value": value, "greater_is_better": self.greater})
        else:
            self.bad_evals += 1
            if self.patience and self.bad_evals >= self.patience:
                control.should_training_stop = True
                state.stateful_callbacks["lawtune_early_stop"] = {"step": state.global_step}


def _restore_best(run_dir: Path, metric: str, greater: bool) -> tuple[float | None, int | None, int]:
    """On resume: the best so far from best/best.json, and how many evals since then did not beat it."""
    info_file = run_dir / BEST_ADAPTER_DIR / BEST_INFO
    if not info_file.is_file():
        return None, None, 0
    info = json.loads(info_file.read_text(encoding="utf-8"))
    if info.get("metric") != metric:
        return None, None, 0
    later = [e for e in read_metrics(run_dir) if metric in e and e["step"] > info["step"]]
    return info["value"], info["step"], len(later)


def trim_between_layers(model: Any, every: int = 1) -> list[Any]:
    """Trim the heap (`lawtune.memory.trim_heap`) before the forward of every `every`-th decoder layer (the first,
    then each `every` later) and when the backward reaches its output (before its recompute and backward).
    Returns the hook handles (`.remove()` them to stop)."""
    import torch

    from lawtune.memory import trim_heap
    from lawtune.training.checkpointing import decoder_layers

    def before(_module: Any, _inputs: Any) -> None:
        trim_heap()

    def after(_module: Any, _inputs: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        if torch.is_grad_enabled() and isinstance(hidden, torch.Tensor) and hidden.requires_grad:
            hidden.register_hook(lambda _grad: trim_heap())  # runs as the gradient reaches the layer's output

    handles = []
    for layer in decoder_layers(model)[::every]:
        handles += [layer.register_forward_pre_hook(before), layer.register_forward_hook(after)]
    return handles


class TrimHeap(TrainerCallback):
    """Give the heap's freed pages back to the OS between the decoder layers of every step (`trim_between_layers`,
    every `every_layers`-th layer), after every step and evaluation (`lawtune.memory.trim_heap`), and after an
    evaluation the pages of the float32 weights it read (`fused_lora.page_out_cast_weights`).

    A step frees its activations in blocks of a few MiB, which glibc keeps; live blocks allocated in between
    (gradients, optimizer state, Python objects) leave holes, and the RSS grew by ~100 MiB a step on the
    default model (docs/training.md "Memory"); within a step those holes added up to ~670 MiB of anonymous
    memory at the demo's peak (measured trimming at every layer), which trimming at the step's end came too late for. Trimming touches no tensor, so training is unchanged
    (losses equal to the last digit); the pages are faulted in again when reused."""

    def __init__(self, every_layers: int = 0) -> None:
        self.every_layers = every_layers  # speed.trim_heap_layers: 0 = only after steps and evaluations
        self._handles: list[Any] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and self.every_layers and not self._handles:
            self._handles = trim_between_layers(model, self.every_layers)

    def on_train_end(self, args, state, control, **kwargs):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_step_end(self, args, state, control, **kwargs):
        from lawtune.memory import trim_heap

        trim_heap()

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        from lawtune.memory import trim_heap
        from lawtune.training.fused_lora import page_out_cast_weights

        trim_heap()
        if model is not None:  # the evaluation read the float32 weights that training reads through casts
            page_out_cast_weights(model)


class CheckpointMarker(TrainerCallback):
    """Mark checkpoint-N complete once the Trainer has written all of it (on_save runs after the save)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
            if folder.is_dir():
                atomic_write_json(folder / COMPLETE_MARKER, {"step": state.global_step})


class RichProgress(TrainerCallback):
    """A rich progress bar: step, loss, supervised tokens/s and ETA (main process only)."""

    def __init__(self, token_counter: Any):
        self.token_counter = token_counter
        self.progress = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("dev {task.fields[dev]}"),
            TextColumn("{task.fields[speed]} sup tok/s"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                           loss="-", dev="-", speed="-")
        self.start_time, self.start_tokens = time.monotonic(), self.token_counter.tokens

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is None:
            return
        elapsed = time.monotonic() - self.start_time
        tokens = (self.token_counter.tokens - self.start_tokens) * max(args.world_size, 1)
        self.progress.update(self.task, completed=state.global_step, speed=f"{tokens / max(elapsed, 1e-9):.0f}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        if "loss" in logs:
            self.progress.update(self.task, loss=f"{logs['loss']:.3f}")
        if "eval_loss" in logs:
            self.progress.update(self.task, dev=f"{logs['eval_loss']:.3f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
