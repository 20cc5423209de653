"""Tuned alone / tuned + KB / base + KB on held-out article-cited questions: ROUGE-L, the citation check and grounding.

    .venv/bin/python benchmarks/kb_rag_answers.py out/demo/run out/kb/cited/test.jsonl --kb out/kb/bundled.sqlite \\
        --check-kb out/kb/lawrefbook.sqlite --limit 24 --max-new-tokens 96 -o out/kb/answers

The same measurement as `lawtune eval RUN --data FILE --kb KB --check-kb KB2` (which also scores eval loss, the
costly part on long RAG prompts), without the loss: one model load per model, greedy generation through
`lawtune.evaluation.generation.generate` with the default decoding policy, the RAG prompt of `lawtune.kb.rag`,
ROUGE-L of `lawtune.evaluation.metrics`, `lawtune.kb.rag.citation_metrics` and `lawtune.kb.grounding` (cited
articles among the retrieved, reference-article agreement, instruction echo). Writes OUT/<condition>.jsonl
(question, answer, retrieved, citations) and OUT/summary.json after each condition, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lawtune.data.conversations import read_examples  # noqa: E402
from lawtune.evaluation.generation import GenerationSettings, generate  # noqa: E402
from lawtune.evaluation.metrics import rouge_f  # noqa: E402
from lawtune.kb.grounding import ArticleKeys, grounding_metrics, hit_key  # noqa: E402
from lawtune.kb.rag import Rag, citation_metrics, open_checker  # noqa: E402
from lawtune.modeling.loading import load_model  # noqa: E402

CONDITIONS = (("tuned+kb", False, True), ("tuned", False, False), ("base+kb", True, True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("questions")
    parser.add_argument("--kb", required=True)
    parser.add_argument("--check-kb", help="KB for the citation check (default: --kb)")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--only", nargs="*", help="conditions to run (tuned+kb tuned base+kb)")
    parser.add_argument("-o", "--out", default="out/kb/answers")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    examples = list(read_examples(args.questions, args.limit))
    checker = open_checker(args.check_kb or args.kb)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, max_input_length=1536)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    loaded, loaded_base = None, None
    with Rag.open(args.kb, k=args.k) as rag:
        for name, base_only, with_kb in CONDITIONS:
            if args.only and name not in args.only:
                continue
            if loaded is None or loaded_base != base_only:
                loaded, loaded_base = None, None
                loaded, loaded_base = load_model(args.run, base_only=base_only, merge=True), base_only
            augmented = [rag.augment(e.prompt) if with_kb else None for e in examples]
            conversations = [a.messages if a else e.prompt for a, e in zip(augmented, examples)]
            started = time.perf_counter()
            outputs = generate(loaded, conversations, settings, description=name)
            seconds = time.perf_counter() - started
            answers = [o.text for o in outputs]
            verdicts, cited = citation_metrics(checker, answers)
            retrieved = [[hit_key(h) for h in a.hits] for a in augmented] if with_kb else None
            grounding, grounded = grounding_metrics(ArticleKeys(checker, rag.store), answers,
                                                    [e.reference for e in examples], retrieved)
            rouge = [rouge_f(a, e.reference)["rouge-l"] for a, e in zip(answers, examples)]
            with open(out / f"{name}.jsonl", "w", encoding="utf-8") as handle:
                for e, a, answer, v, r, g in zip(examples, augmented, answers, verdicts, rouge, grounding):
                    handle.write(json.dumps({"question": e.question, "answer": answer, "rouge-l": round(r, 2),
                                             "retrieved": a.references() if a else None, "citations": v,
                                             "grounding": g}, ensure_ascii=False) + "\n")
            summary[name] = {"n": len(examples), "rouge-l": round(statistics.mean(rouge), 2), **cited, **grounded,
                             "generation_s": round(seconds, 1)}
            summary["settings"] = {"run": args.run, "questions": args.questions, "kb": args.kb,
                                   "check_kb": args.check_kb or args.kb, "k": args.k, "limit": args.limit,
                                   **settings.record()}
            summary_path.write_text(json.dumps(summary, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
            print(name, json.dumps(summary[name], ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
