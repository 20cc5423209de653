"""Generate-then-retrieve on LawBench 3-2: does a model's draft answer, added to the question, find the cited article?

    .venv/bin/python benchmarks/kb_draft_retrieval.py --model runs/full --kb /tmp/all.sqlite --limit 120
    .venv/bin/python benchmarks/kb_draft_retrieval.py --model runs/full --kb /tmp/all.sqlite --drafts /tmp/drafts.jsonl

fuzi.mingcha's idea (issue 12): scenario questions share few words with statute text, but a legal model's
draft answer uses the statute's vocabulary ("经营者提供的商品…不符合质量要求的，消费者可以…退货") and often names
the law. The query is then the question plus the draft. Drafts are greedy (deterministic) and cached in a
JSONL file (`--drafts`), so changing the retrieval side costs no generation. The index is the one
`benchmarks/kb_retrieval.py --keep /tmp/all.sqlite` builds (all of LawRefBook).

Prints recall@1/5/20 of the cited article and law for: the question alone, the draft alone, question + draft,
on the same questions; plus the draft's generation speed and the CPU flags / dtype it ran with.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from decoding_sweep import cpu_flags  # noqa: E402
from kb_retrieval import KS, SHARED, gold_text, question_text  # noqa: E402

from lawtune.kb import open_store  # noqa: E402
from lawtune.kb.citations import find_citations  # noqa: E402
from lawtune.kb.names import LawNames  # noqa: E402
from lawtune.kb.retrieval import Retriever  # noqa: E402


def make_drafts(model: str, questions: list[str], cache: Path, dtype: str, max_new_tokens: int) -> dict[str, str]:
    """Greedy drafts for the questions not in the cache yet; the cache grows line by line (a crash loses one batch)."""
    drafts: dict[str, str] = {}
    if cache.exists():
        for line in cache.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            drafts[record["question"]] = record["draft"]
    todo = [q for q in dict.fromkeys(questions) if q not in drafts]
    if not todo:
        return drafts
    from lawtune.evaluation.generation import GenerationSettings, generate
    from lawtune.modeling.loading import load_model

    loaded = load_model(model, dtype=dtype)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=8)
    print(f"drafting {len(todo)} answers with {model} ({dtype}, CPU flags {cpu_flags()}, {max_new_tokens} new tokens)")
    start, tokens = time.perf_counter(), 0
    with cache.open("a", encoding="utf-8") as out:
        for first in range(0, len(todo), 32):
            chunk = todo[first:first + 32]
            outputs = generate(loaded, [[{"role": "user", "content": q}] for q in chunk], settings)
            for question, output in zip(chunk, outputs):
                drafts[question] = output.text
                tokens += output.new_tokens
                out.write(json.dumps({"question": question, "draft": output.text}, ensure_ascii=False) + "\n")
            out.flush()
    elapsed = time.perf_counter() - start
    print(f"drafts: {tokens} tokens in {elapsed:.0f} s ({tokens / elapsed:.1f} tok/s, {elapsed / len(todo):.1f} s a question)")
    return drafts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run folder or model that writes the drafts")
    parser.add_argument("--kb", required=True, help="index of all of LawRefBook (kb_retrieval.py --keep PATH)")
    parser.add_argument("--questions", default=str(SHARED / "lawbench" / "zero_shot" / "3-2.json"))
    parser.add_argument("--drafts", default="/tmp/lawtune_drafts.jsonl", help="draft cache (JSONL)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()

    store = open_store(args.kb)
    catalog = store.catalog()
    names = LawNames([*catalog.versions, *catalog.repealed])
    cases = []
    for record in json.loads(Path(args.questions).read_text(encoding="utf-8")):
        cited = [c for c in find_citations(gold_text(record["answer"]), names) if c.article and c.law_full][:1]
        gold = {(c.law_full, c.article, c.sub) for c in cited if store.lookup(c.law_full, c.article, c.sub)}
        if gold:
            cases.append((question_text(record), gold))
    cases = cases[: args.limit or None]
    drafts = make_drafts(args.model, [q for q, _ in cases], Path(args.drafts), args.dtype, args.max_new_tokens)

    queries = {"question": lambda q: q, "draft": lambda q: drafts[q], "question + draft": lambda q: q + "\n" + drafts[q]}
    retriever = Retriever(store)
    print(f"{len(cases)} questions, index {store.count()}, tokenizer {store.tokenizer}, current versions")
    for label, query in queries.items():
        article = {k: 0 for k in KS}
        law = {k: 0 for k in KS}
        for question, gold in cases:
            hits = retriever.search(query(question), max(KS), kinds=("article",))
            for k in KS:
                article[k] += any((h.item.law_full, h.item.article, h.item.sub) in gold for h in hits[:k])
                law[k] += any(h.item.law_full in {g[0] for g in gold} for h in hits[:k])
        n = len(cases)
        print(f"  {label:17s} article " + "  ".join(f"@{k} {article[k] / n:.3f}" for k in KS)
              + "   law " + "  ".join(f"@{k} {law[k] / n:.3f}" for k in KS))
    store.close()


if __name__ == "__main__":
    main()
