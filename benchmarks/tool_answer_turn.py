"""The answer after a tool result, alone: given the right call and its real result, does the answer state the figure?

    python benchmarks/tool_answer_turn.py out/demo/run-tools --data out/demo/tools/test.jsonl --limit 40
    python benchmarks/tool_answer_turn.py out/demo/run --base --data out/demo/tools/test.jsonl --limit 40

`lawtune eval`'s tool metrics score the whole agent loop: a figure missing from the final answer may come from a
wrong call as well as from the answer turn. Here each tool question's prompt is its record's own first three turns
— the question, the expected call and the tool's real result (`lawtune tools generate` ran the tool) — so only the
answer turn is generated, under the same decoding as eval (the lazy grammar: no call after a successful round,
the figures rule), once with `DecodingPolicy.tool_result_figure` off and once on (`--tool-result-figure`, the answer
may not end before it states the results' figures). Reported per setting: answers holding the expected figure
(`tool_eval.holds_figure`, the eval's own check), answers that ended on their own (not at the token budget), the
mean answer length, and the answers (`--out`). The rule and the check read the tool result, never the question.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from decoding_sweep import cpu_flags  # benchmarks/ is on sys.path when a script in it runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", required=True, type=Path, help="a tool set (lawtune tools generate: DIR/test.jsonl)")
    parser.add_argument("--limit", type=int, default=40, help="records read (the tool questions among them are asked)")
    parser.add_argument("--base", action="store_true", help="the run's base model instead of its adapter")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, help="write each answer to OUT/answers-{off,on}.jsonl")
    args = parser.parse_args()

    from lawtune.errors import LawtuneError
    from lawtune.evaluation.generation import GenerationSettings, generate
    from lawtune.evaluation.tool_eval import TOOL_INPUT_LENGTH, holds_figure
    from lawtune.memory import peak_rss_mib
    from lawtune.modeling.decoding import DecodingPolicy
    from lawtune.modeling.loading import load_model

    records = []
    for line in args.data.read_text(encoding="utf-8").splitlines()[: args.limit]:
        record = json.loads(line)
        turns = record.get("conversations") or []
        if (record.get("meta") or {}).get("kind") == "tool" and len(turns) >= 4 and turns[2].get("role") == "tool":
            records.append(record)
    if not records:
        raise SystemExit(f"{args.data}: no tool conversations among the first {args.limit} records")
    try:
        loaded = load_model(args.run, base_only=args.base, merge=True)
    except LawtuneError as error:
        raise SystemExit(str(error)) from None
    prompts = [record["conversations"][:3] for record in records]
    tools = [record["tools"] for record in records]
    print(f"CPU flags: {cpu_flags()}; dtype float32; {'base of ' if args.base else ''}{args.run}; "
          f"{len(records)} tool questions of the first {args.limit} records of {args.data}")
    base = GenerationSettings(max_new_tokens=args.max_new_tokens, max_input_length=TOOL_INPUT_LENGTH)
    for label, on in (("off", False), ("on", True)):
        settings = replace(base, decoding=DecodingPolicy(tool_result_figure=on))
        started = time.perf_counter()
        outputs = generate(loaded, prompts, settings, description=f"answers, --tool-result-figure {label}", tools=tools)
        held = [holds_figure(output.text, record["meta"].get("figure")) for output, record in zip(outputs, records)]
        ended = [output.finish_reason == "stop" for output in outputs]
        mean_chars = sum(len(output.text) for output in outputs) / len(outputs)
        print(f"tool_result_figure {label:>3}: figure stated {sum(held)}/{len(held)} ({100 * sum(held) / len(held):.1f} %), "
              f"ended {sum(ended)}/{len(ended)}, mean {mean_chars:.0f} chars, {time.perf_counter() - started:.0f} s")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            rows = [{"question": record["conversations"][0]["content"], "tool": record["meta"].get("tool"),
                     "figure": record["meta"].get("figure"), "answer": output.text, "finish": output.finish_reason,
                     "figure_stated": ok} for record, output, ok in zip(records, outputs, held)]
            (args.out / f"answers-{label}.jsonl").write_text(
                "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
