"""The loss-curve PNG of a run: train loss and dev loss against the step, from RUN/metrics.jsonl.

    plot_loss_curve(Path("runs/demo"))   # writes runs/demo/loss_curve.png
"""

from __future__ import annotations

from pathlib import Path

from lawtune.fsutil import atomic_open
from lawtune.modeling.runs import LOSS_CURVE, loss_points


def plot_loss_curve(run_dir: Path, out: Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = out or run_dir / LOSS_CURVE
    train, dev = loss_points(run_dir)
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        axis.plot(*zip(*train), label="train loss")
    if dev:
        axis.plot(*zip(*dev), marker="o", label="dev loss")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (supervised tokens)")
    axis.set_title(run_dir.name)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    with atomic_open(out, "wb") as handle:
        figure.savefig(handle, format="png")
    plt.close(figure)
    return out
