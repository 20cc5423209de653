"""Has a model learned to stop? Teacher-forced end-of-turn probability at the end of reference answers.

    python benchmarks/stop_probe.py out/demo/run runs/x --data out/demo/data/dev.jsonl --limit 48
    python benchmarks/stop_probe.py out/demo/run --base --data out/demo/data/dev.jsonl

For each run (its best adapter; `--base` adds the run's base model) prints the dev eval loss and the
distribution of p(<end_of_turn> | prompt + whole reference answer). It needs one forward pass per answer,
no generation, so it screens training recipes in seconds before the slow generation eval
(`lawtune eval RUN --data dev.jsonl`) confirms the ended / looping shares.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from decoding_sweep import cpu_flags  # benchmarks/ is on sys.path when a script in it runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--limit", type=int, default=48)
    parser.add_argument("--base", action="store_true", help="also score the first run's base model")
    parser.add_argument("--adapter", default="best")
    args = parser.parse_args()

    from lawtune.data.conversations import read_examples
    from lawtune.evaluation.metrics import distribution
    from lawtune.evaluation.scoring import eval_loss
    from lawtune.modeling.loading import load_model

    examples = list(read_examples(args.data, args.limit))
    print(f"CPU flags: {cpu_flags()}; dtype float32; {len(examples)} answers of {args.data}")
    specs = ([(args.runs[0], True)] if args.base else []) + [(run, False) for run in args.runs]
    print(f"{'model':<40} {'eval loss':>9} {'p(stop) mean':>12} {'p10':>7} {'p50':>7} {'p90':>7} {'s':>5}")
    for spec, base_only in specs:
        started = time.perf_counter()
        loaded = load_model(spec, base_only=base_only, adapter=args.adapter, merge=True)
        result = eval_loss(loaded, examples, show_progress=False)
        stats = distribution([p for p in result["stop_probs"] if p is not None])
        name = f"{spec} (base)" if base_only else str(spec)
        print(f"{name[-40:]:<40} {result['eval_loss']:>9.4f} {stats['mean']:>12.4f} {stats['p10']:>7.4f} "
              f"{stats['p50']:>7.4f} {stats['p90']:>7.4f} {time.perf_counter() - started:>5.0f}", flush=True)


if __name__ == "__main__":
    main()
