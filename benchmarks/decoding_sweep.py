"""Which decoding policy? Greedy answers of one run under several repetition controls, with and without the
repetition stop, scored as eval scores them.

    .venv/bin/python benchmarks/decoding_sweep.py out/demo/run --data out/demo/data/dev.jsonl --limit 24 --max-new-tokens 384
    .venv/bin/python benchmarks/decoding_sweep.py RUN --data DEV.jsonl --only none rep1.2 rep1.2+stop
    .venv/bin/python benchmarks/decoding_sweep.py RUN --data DEV.jsonl --cache sweep.json   # resume / re-print

A setting is a repetition control from `CONTROLS` below, optionally with the repetition stop ("+stop"). The
run's best adapter answers the first `--limit` questions greedily, batched as eval batches them. A setting
generated without the stop also prints a derived "+stop" row: the same token ids replayed through
`generation.decode_new_tokens` with the stop on. That is exact, not an estimate (the stop only ends a row
early, it never changes a token before it; rows of a batch do not influence each other; when both forms
of a setting are generated the script checks they agree), but its seconds are the no-stop run's.
Columns:
  ended %        answers whose model emitted its end-of-turn token (on its own; a repetition stop is not)
  loops % raw    answers `metrics.loops` flags before any cut;  loops % = in the answer as returned
  rep. stop %    answers the repetition stop ended
  len/ref        mean of (answer tokens / reference tokens), the answer as returned
  ROUGE-L        mean ROUGE-L of `metrics.score_pair` (jieba words, F × 100)
Prints the CPU flags and dtype it ran with. `--cache FILE` keeps each setting's generated ids, so a re-run
skips what is done (a new run folder needs a new cache file).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

from lawtune.modeling.decoding import DecodingPolicy

# spelled out: "none" must stay no control whatever DecodingPolicy's defaults become
PLAIN = DecodingPolicy(repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0, no_repeat_ngram_size=0,
                       repetition_stop=False)
CONTROLS = {  # name → the repetition control
    "none": PLAIN,
    "rep1.1": replace(PLAIN, repetition_penalty=1.1),
    "rep1.15": replace(PLAIN, repetition_penalty=1.15),
    "rep1.2": replace(PLAIN, repetition_penalty=1.2),
    "rep1.3": replace(PLAIN, repetition_penalty=1.3),
    "freq0.1": replace(PLAIN, frequency_penalty=0.1),
    "freq0.3": replace(PLAIN, frequency_penalty=0.3),
    "pres0.5": replace(PLAIN, presence_penalty=0.5),
    "pres1.0": replace(PLAIN, presence_penalty=1.0),
    "ngram6": replace(PLAIN, no_repeat_ngram_size=6),
    "rep1.2-ngram6": replace(PLAIN, repetition_penalty=1.2, no_repeat_ngram_size=6),
}
SETTINGS = {**CONTROLS, **{f"{name}+stop": replace(policy, repetition_stop=True) for name, policy in CONTROLS.items()}}
# "none" in full (its +stop row is replayed), the rest with the stop: looping answers then end early, which
# saves most of the time with --engine batch (a 24 × 384-token setting is 10-60 minutes on 2 shared cores)
DEFAULT_SETTINGS = ["none", "rep1.2+stop", "freq0.3+stop", "rep1.1+stop", "pres0.5+stop", "rep1.3+stop"]


def cpu_flags() -> str:
    """The CPU flags that decide the matmul path, for every benchmark's header (stop_probe, serve_throughput, …)."""
    from lawtune.modeling.loading import cpu_flags as read_flags

    flags = read_flags()
    if not flags:
        return platform.machine()
    return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags) or "none of avx2/avx512"


def generate_ids(loaded, examples, policy: DecodingPolicy, max_new_tokens: int, batch_size: int) -> tuple[list, float]:
    """Greedy new-token ids per example (the same batching as eval) and the seconds it took."""
    import torch

    from lawtune.evaluation.generation import GenerationSettings, decoding_hooks, generation_config, prompt_ids

    settings = GenerationSettings(max_new_tokens=max_new_tokens, decoding=policy, batch_size=batch_size)
    pad = loaded.tokenizer.pad_token_id
    encoded = [prompt_ids(loaded.chat, e.prompt, settings.max_input_length) for e in examples]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))  # as generation.generate batches
    ids: list = [None] * len(encoded)
    started = time.perf_counter()
    for first in range(0, len(order), batch_size):
        batch = order[first:first + batch_size]
        width = max(len(encoded[i]) for i in batch)
        input_ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in batch])
        attention = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch])
        with torch.inference_mode():
            out = loaded.model.generate(input_ids=input_ids, attention_mask=attention,
                                        generation_config=generation_config(loaded, settings),
                                        **decoding_hooks(loaded, policy, len(batch), width))
        for row, index in enumerate(batch):
            ids[index] = out[row, width:].tolist()
        print(f"  {first + len(batch)}/{len(order)} answers, {time.perf_counter() - started:.0f} s", flush=True)
    return ids, time.perf_counter() - started


def generate_ids_batched(loaded, examples, policy: DecodingPolicy, max_new_tokens: int, slots: int) -> tuple[list, float]:
    """The same answers through the server's continuous batching (`serving.engines.batch`, what `lawtune serve` runs):
    a finished answer frees its slot for the next question at once, and the output head is transposed, so
    it is ~2x faster than generate() here. tests/serving/test_api_batch.py checks both give the same tokens
    (a floating-point near-tie between the two best tokens can still part them on a long answer)."""
    import collections

    from lawtune.evaluation.generation import prompt_ids
    from lawtune.modeling.decoding import RepetitionWatch, TextStream
    from lawtune.serving.engines.batch import DecodeBatch, Sequence, transpose_output_head

    transpose_output_head(loaded.model)
    stops = frozenset(loaded.chat.stop_token_ids)
    waiting = collections.deque(range(len(examples)))
    batch, ids, live = DecodeBatch(loaded.model), [None] * len(examples), {}
    started = time.perf_counter()

    def finished(seq, token: int) -> bool:
        index, stream = live[id(seq)]
        if token in stops or len(seq.generated) >= max_new_tokens:
            return True
        stream.push(token)
        return stream.repeated

    while waiting or batch.sequences:
        while waiting and len(batch.sequences) < slots:
            index = waiting.popleft()
            seq = Sequence(prompt_ids(loaded.chat, examples[index].prompt, 512),
                           decoding=policy if policy.penalizes else None, stop_ids=stops)
            live[id(seq)] = (index, TextStream(loaded.tokenizer, watch=RepetitionWatch() if policy.repetition_stop else None))
            if finished(seq, batch.join(seq)):
                batch.remove([seq])
                ids[index] = seq.generated
        tokens = batch.step() if batch.sequences else []
        done = [seq for seq, token in zip(list(batch.sequences), tokens) if finished(seq, token)]
        batch.remove(done)
        for seq in done:
            ids[live[id(seq)][0]] = seq.generated
            print(f"  {sum(i is not None for i in ids)}/{len(ids)} answers, {time.perf_counter() - started:.0f} s", flush=True)
    return ids, time.perf_counter() - started


def score(loaded, examples, ids: list, policy: DecodingPolicy) -> dict:
    """The table's columns for one setting (answers = the ids decoded under `policy`)."""
    from lawtune.evaluation.generation import decode_new_tokens
    from lawtune.evaluation.metrics import loops, score_pair

    raw = [decode_new_tokens(loaded, row, replace(policy, repetition_stop=False)) for row in ids]
    final = [decode_new_tokens(loaded, row, policy) for row in ids]
    count = len(examples)

    def tokens(text: str) -> int:
        return len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    ratios = [tokens(g.text) / max(tokens(e.reference), 1) for g, e in zip(final, examples)]
    rouge = [score_pair(g.text, e.reference)["rouge-l"] for g, e in zip(final, examples)]
    return {
        "ended_pct": 100 * sum(g.ended for g in final) / count,
        "loops_raw_pct": 100 * sum(loops(g.text) for g in raw) / count,
        "loops_pct": 100 * sum(loops(g.text) for g in final) / count,
        "repetition_pct": 100 * sum(g.finish_reason == "repetition" for g in final) / count,
        "len_ratio": sum(ratios) / count,
        "rouge_l": sum(rouge) / count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run folder (its best adapter is used)")
    parser.add_argument("--data", required=True, type=Path, help="conversations JSONL (the dev split)")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), default=DEFAULT_SETTINGS)
    parser.add_argument("--cache", type=Path, help="JSON file keeping generated ids between runs")
    parser.add_argument("--engine", choices=["generate", "batch"], default="generate",
                        help="generate: eval's model.generate (default); batch: the server's continuous batching")
    args = parser.parse_args()

    import torch

    from lawtune.data.conversations import read_examples
    from lawtune.modeling.loading import load_model

    print(f"CPU: {platform.processor() or platform.machine()}, flags: {cpu_flags()}, torch threads "
          f"{torch.get_num_threads()}, dtype {args.dtype}")
    loaded = load_model(args.run, dtype=args.dtype, merge=True)
    examples = list(read_examples(args.data, limit=args.limit))
    print(f"{loaded.name}: {len(examples)} questions of {args.data}, greedy, {args.max_new_tokens} new tokens, "
          f"batch {args.batch_size}")
    key = f"{Path(args.run).resolve()}|{args.data.resolve()}|{len(examples)}|{args.max_new_tokens}|{args.batch_size}|{args.dtype}"
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.is_file() else {}
    if cache.get("key", key) != key:
        raise SystemExit(f"{args.cache} holds another sweep ({cache['key']}); give a new --cache file")
    cache["key"] = key

    rows = []
    for name in args.only:
        policy = SETTINGS[name]
        done = cache.setdefault("runs", {}).get(name)
        if done is None:
            print(f"{name}: generating ({policy})", flush=True)
            run = generate_ids if args.engine == "generate" else generate_ids_batched
            ids, seconds = run(loaded, examples, policy, args.max_new_tokens, args.batch_size)
            done = cache["runs"][name] = {"ids": ids, "seconds": seconds, "engine": args.engine}
            if args.cache:
                args.cache.write_text(json.dumps(cache))
        rows.append((f"{name} ({done.get('engine', 'generate')})", score(loaded, examples, done["ids"], policy),
                     done["seconds"]))
        if not policy.repetition_stop and f"{name}+stop" not in args.only:
            rows.append((f"{name}+stop", score(loaded, examples, done["ids"], SETTINGS[f"{name}+stop"]), None))
    for name in args.only:  # both forms generated: the replayed no-stop ids must give the stop run's answers
        twin = cache["runs"].get(f"{name}+stop")
        if not SETTINGS[name].repetition_stop and twin is not None:
            stopped = SETTINGS[f"{name}+stop"]
            agree = sum(score_text(loaded, a, stopped) == score_text(loaded, b, stopped)
                        for a, b in zip(cache["runs"][name]["ids"], twin["ids"]))
            print(f"{name} replayed with the stop = {name}+stop generated: {agree}/{len(examples)} answers equal")

    print()
    print("| setting | ended % | loops % raw | loops % | rep. stop % | len/ref | ROUGE-L | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name, s, seconds in rows:
        took = f"{seconds:.0f}" if seconds is not None else "(replayed)"
        print(f"| {name} | {s['ended_pct']:.1f} | {s['loops_raw_pct']:.1f} | {s['loops_pct']:.1f} | "
              f"{s['repetition_pct']:.1f} | {s['len_ratio']:.2f} | {s['rouge_l']:.2f} | {took} |")


def score_text(loaded, ids: list, policy: DecodingPolicy) -> str:
    from lawtune.evaluation.generation import decode_new_tokens

    return decode_new_tokens(loaded, ids, policy).text


if __name__ == "__main__":
    main()
