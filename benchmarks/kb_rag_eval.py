"""Retrieval recall on held-out article-cited questions: does `--kb` put the cited article in the prompt?

    .venv/bin/python benchmarks/kb_rag_eval.py out/kb/bundled.sqlite out/kb/cited/test.jsonl
    .venv/bin/python benchmarks/kb_rag_eval.py out/kb/lawrefbook.sqlite out/kb/cited/test.jsonl --json

The questions are a `lawtune prepare` output of lawyer-llama's legal_counsel_with_article_v2.json
(data/article_cited/): each line keeps the articles its reference answer was written from in `meta.laws`
("《民法典》第一千零七十六条：…", three per question). For k in 1/3/5/20 it prints, over the questions:
- article recall@k: share of the cited articles found in the top k (each question weighs the same);
- article hit@k: share of questions with at least one cited article in the top k;
- law recall@k: share of questions whose top k holds an article of a cited law.
Also the median query time. The same search `lawtune eval --kb` runs (`Retriever.search`, current versions).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lawtune.data.conversations import read_examples  # noqa: E402
from lawtune.kb import open_store  # noqa: E402
from lawtune.kb.names import LawNames  # noqa: E402
from lawtune.kb.retrieval import Retriever  # noqa: E402
from lawtune.kb.numerals import to_int  # noqa: E402

KS = (1, 3, 5, 20)  # 3: what `--kb` puts in the prompt by default
GOLD_RE = re.compile(r"^《([^》]+)》第([零〇一二三四五六七八九十百千两\d]+)条(?:之([一二三四五六七八九十\d]+))?")


def gold_articles(laws: list[str], names: LawNames) -> set[tuple[str, int, int]]:
    """(law full name, article, sub) of each `meta.laws` entry that names a law the KB knows."""
    gold = set()
    for entry in laws:
        match = GOLD_RE.match(entry.strip())
        law_full = names.resolve(match.group(1)) if match else None
        if law_full:
            gold.add((law_full, to_int(match.group(2)), to_int(match.group(3)) if match.group(3) else 0))
    return gold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kb")
    parser.add_argument("questions", help="conversations JSONL with meta.laws (lawtune prepare output)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args()

    with open_store(args.kb) as store:
        catalog = store.catalog()
        names = LawNames([*catalog.versions, *catalog.repealed])
        retriever = Retriever(store)
        rows, skipped, times = [], 0, []
        for example in read_examples(args.questions, args.limit):
            gold = gold_articles(example.meta.get("laws", []), names)
            if not gold:
                skipped += 1
                continue
            started = time.perf_counter()
            hits = retriever.search(example.question, k=max(KS), kinds=("article",))
            times.append(time.perf_counter() - started)
            found = [(h.item.law_full, h.item.article, h.item.sub) for h in hits]
            rows.append((gold, found))
    if not rows:
        sys.exit(f"{args.questions}: no question cites an article of a law in {args.kb}")
    result = {"kb": args.kb, "questions": args.questions, "n": len(rows), "skipped": skipped,
              "query_ms_median": round(1000 * statistics.median(times), 1)}
    for k in KS:
        result[f"article_recall@{k}"] = round(statistics.mean(len(g & set(f[:k])) / len(g) for g, f in rows), 3)
        result[f"article_hit@{k}"] = round(statistics.mean(bool(g & set(f[:k])) for g, f in rows), 3)
        result[f"law_recall@{k}"] = round(statistics.mean(bool({x[0] for x in g} & {x[0] for x in f[:k]})
                                                          for g, f in rows), 3)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    print(f"{result['n']} questions ({skipped} skipped: no cited law in the KB), query median {result['query_ms_median']} ms")
    for what in ("article_recall", "article_hit", "law_recall"):
        print(f"{what:15s} " + "  ".join(f"@{k} {result[f'{what}@{k}']:.3f}" for k in KS))


if __name__ == "__main__":
    main()
