"""The torch engine's open-book prefill: one RAG prompt into `DecodeBatch.join`, with and without projecting only the
last position onto the vocabulary.

    flock /tmp/lawtune-heavy.lock .venv/bin/python benchmarks/torch_prefill.py --kb kb.sqlite
    ... benchmarks/torch_prefill.py --kb kb.sqlite --dtype float32 --rounds 5

Loads the model as `lawtune serve` does (`--dtype`, default auto: bfloat16 with hardware bf16; the transposed output
head), builds the prompts `serve_throughput.py --kb` sends (k articles of `--kb-chars` characters, the server's own
RAG prompt) and joins each into an empty batch, alternating the two variants prompt by prompt so both see the same
load:
- `all positions`: the prefill as it was before, the output head over every prompt position (prompt × 262k logits);
- `last position`: `logits_to_keep=1`, what `DecodeBatch` does now (and what `model.generate` does).
Prints per variant the median prefill time of a prompt, prompt tokens/s, and the peak RSS above the RSS before the
join, for the longest prompt (the kernel's high-water mark reset before it: the logits tensor is freed at its end), the
ratio, and whether both picked the same first token for every prompt. CPU flags,
dtype and load average in the header: on a shared machine only the ratio within one run means anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from decoding_sweep import cpu_flags  # noqa: E402
from llama_prefill import prompt_ids  # noqa: E402


def high_water_mark() -> float:
    """The process's peak RSS since the last reset (VmHWM), MiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def reset_high_water_mark() -> float:
    """Reset VmHWM to the RSS now (Linux /proc/self/clear_refs) and return it, MiB."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return high_water_mark()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", required=True, help="KB to retrieve from (sqlite file or postgresql:// URL)")
    parser.add_argument("--model", default="default", help="imported model name or model folder")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 with hardware bf16), float32, bfloat16")
    parser.add_argument("--kb-k", type=int, default=3)
    parser.add_argument("--kb-chars", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the prompts (the first is a warm-up)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from lawtune.memory import trim_heap
    from lawtune.modeling.loading import load_base, resolve_dtype
    from lawtune.modeling.runs import resolve_model_path
    from lawtune.serving.engines.batch import DecodeBatch, Sequence, transpose_output_head

    torch.set_grad_enabled(False)
    dtype = resolve_dtype(args.dtype)
    prompts = prompt_ids(args.model, args.kb, args.kb_k, args.kb_chars)
    model = load_base(resolve_model_path(args.model), dtype)
    transpose_output_head(model)
    print(f"CPU flags {cpu_flags()}, {os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads, dtype {dtype}, "
          f"load average {os.getloadavg()[0]:.1f}; {len(prompts)} prompts, tokens mean "
          f"{statistics.mean(map(len, prompts)):.0f}, max {max(map(len, prompts))}", flush=True)
    variants = {"all positions": False, "last position": True}
    times: dict[str, list[float]] = {name: [] for name in variants}
    growth: dict[str, float] = {}
    first: dict[str, list[int]] = {name: [] for name in variants}
    longest = max(range(len(prompts)), key=lambda i: len(prompts[i]))
    for round_ in range(args.rounds):
        for index, ids in enumerate(prompts):
            for name, last_only in (variants.items() if round_ % 2 == 0 else reversed(variants.items())):
                batch = DecodeBatch(model, last_logits_only=last_only)
                measure_peak = round_ == 1 and index == longest
                if measure_peak:
                    trim_heap()
                    before = reset_high_water_mark()
                start = time.perf_counter()
                token = batch.join(Sequence(list(ids)))
                elapsed = time.perf_counter() - start
                if measure_peak:
                    growth[name] = high_water_mark() - before
                if round_ == 0:
                    first[name].append(token)
                else:  # the first pass warms up kernels and the allocator
                    times[name].append(elapsed)
    tokens = statistics.mean(map(len, prompts))
    for name in variants:
        median = statistics.median(times[name])
        print(f"{name:>14}: prefill median {median * 1000:.0f} ms ({tokens / median:.0f} prompt tokens/s), "
              f"peak RSS above the start of a join ({len(prompts[longest])} tokens) {growth[name]:.0f} MiB")
    ratio = statistics.median(times["all positions"]) / statistics.median(times["last position"])
    same = sum(a == b for a, b in zip(first["all positions"], first["last position"]))
    print(f"last position / all positions: {ratio:.2f}x faster; same first token for {same}/{len(prompts)} prompts "
          f"(load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
