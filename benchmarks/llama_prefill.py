"""Where the llama.cpp engine's open-book time goes: prefill of one RAG prompt, eight joining at once, decode steps.

    flock /tmp/lawtune-heavy.lock .venv/bin/python benchmarks/llama_prefill.py --kb kb.sqlite
    ... benchmarks/llama_prefill.py --kb kb.sqlite --gguf a-Q8_0.gguf b-Q4_K_M.gguf --chunks 128 256 512 --threads 1 2

Drives `LlamaCppBatch` (the engine's batch) directly, no HTTP, on the open-book prompts `serve_throughput.py --kb`
sends (k articles of `--kb-chars` characters each, the server's own RAG prompt), for each GGUF × threads × prefill
chunk:
- `prefill alone`: one prompt into an empty slot (best of 2), its tokens/s;
- `8 joining`: eight prompts admitted at once, as the engine admits eight clients arriving together — the time
  at which each one's first token is ready (what TTFT at 8 clients is made of, before HTTP), and how many prompt
  tokens were copied from a running sequence's KV stream instead of prefilled (the shared RAG instructions); with
  `--compare-copy` also without that copy (`copy_running_prefix=False`, the engine before it), and whether the
  greedy tokens of the eight after `--steps` decode steps are the same both ways;
- `decode step`: one `step()` with 1 and with 8 running sequences.
Each line carries the CPU flags, the GGUF's file name (its quantization) and the load average: on a shared
machine only ratios within one run mean anything. Reads only local files.
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
from serve_throughput import conversations, served_gguf  # noqa: E402


def prompt_ids(model: str, kb: str, k: int, chars: int) -> list[list[int]]:
    from lawtune.modeling.chat import ChatFormat, load_template
    from lawtune.modeling.loading import load_tokenizer
    from lawtune.modeling.runs import is_run_dir, read_run, resolve_model_path

    path = Path(model)
    tokenizer = load_tokenizer(read_run(path).tokenizer_dir if is_run_dir(path) else resolve_model_path(model))
    chat = ChatFormat(tokenizer, load_template("gemma"))
    return [list(chat.encode_prompt(messages)) for messages in conversations(kb, k, chars)]


def measure(gguf: Path, prompts: list[list[int]], *, threads: int, chunk: int, steps: int,
            copy: bool = True) -> tuple[str, list[list[int]]]:
    from lawtune.serving.engines.batch import Sequence
    from lawtune.serving.engines.llama_batch import LlamaCppBatch

    batch = LlamaCppBatch(gguf, max_sequences=8, context=2048, threads=threads, prefill_chunk=chunk,
                          copy_running_prefix=copy)
    try:
        alone = []
        for _ in range(2):
            batch._held.clear()  # forget what the slots hold: a cold prefill
            seq = Sequence(list(prompts[1]))
            start = time.perf_counter()
            batch.join(seq)
            alone.append(time.perf_counter() - start)
            batch.remove([seq])
        batch._held.clear()
        seqs = [Sequence(list(prompts[i % len(prompts)])) for i in range(8)]
        start, ready = time.perf_counter(), []
        for seq in seqs:
            batch.join(seq)
            ready.append(time.perf_counter() - start)
        batch.step()
        start = time.perf_counter()
        for _ in range(steps):
            batch.step()
        step8 = (time.perf_counter() - start) / steps
        batch.remove(seqs[1:])
        start = time.perf_counter()
        for _ in range(steps):
            batch.step()
        step1 = (time.perf_counter() - start) / steps
        batch.remove(seqs[:1])
        copied = batch.copied_tokens
        generated = [seq.generated for seq in seqs]
    finally:
        batch.close()
    tokens = len(prompts[1])
    return (f"{gguf.name} threads {threads} chunk {chunk} prefix copy {'on' if copy else 'off'}: prefill {tokens} "
            f"tokens alone {min(alone) * 1000:.0f} ms "
            f"({tokens / min(alone):.0f} tokens/s) | 8 joining: first tokens at "
            f"{' '.join(f'{t:.2f}' for t in ready)} s (p50 {statistics.median(ready):.2f} s), {copied} prompt tokens "
            f"copied | decode step: 1 sequence {step1 * 1000:.1f} ms, 8 sequences {step8 * 1000:.1f} ms "
            f"| load average {os.getloadavg()[0]:.1f}"), generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", required=True, help="KB to retrieve from (sqlite file or postgresql:// URL)")
    parser.add_argument("--model", default="default", help="its tokenizer; and its GGUF when --gguf is not given")
    parser.add_argument("--gguf", nargs="+", type=Path, default=None, help="GGUF files to compare (e.g. Q8_0 vs Q4_K_M)")
    parser.add_argument("--kb-k", type=int, default=3)
    parser.add_argument("--kb-chars", type=int, default=200)
    parser.add_argument("--chunks", type=int, nargs="+", default=[512], help="prefill chunk sizes (tokens per llama_decode)")
    parser.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count() or 1])
    parser.add_argument("--steps", type=int, default=8, help="decode steps timed")
    parser.add_argument("--compare-copy", action="store_true",
                        help="each setting also without copying a running sequence's prefix (the engine before it)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    prompts = prompt_ids(args.model, args.kb, args.kb_k, args.kb_chars)
    ggufs = args.gguf or [served_gguf(args.model, "Q8_0")]
    print(f"CPU flags {cpu_flags()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; prompt tokens "
          f"mean {statistics.mean(map(len, prompts)):.0f}, shared prefix "
          f"{len(os.path.commonprefix(prompts))}", flush=True)
    for gguf in ggufs:
        for threads in args.threads:
            for chunk in args.chunks:
                line, with_copy = measure(gguf, prompts, threads=threads, chunk=chunk, steps=args.steps)
                print(line, flush=True)
                if args.compare_copy:
                    line, without = measure(gguf, prompts, threads=threads, chunk=chunk, steps=args.steps, copy=False)
                    same = sum(a == b for a, b in zip(with_copy, without))
                    print(f"{line} | greedy tokens equal with and without the copy: {same}/{len(without)}", flush=True)


if __name__ == "__main__":
    main()
