"""Law-article retrieval on real questions: LawBench 3-2 against an index of all of LawRefBook.

    .venv/bin/python benchmarks/kb_retrieval.py                       # build with the default tokenizer, evaluate
    .venv/bin/python benchmarks/kb_retrieval.py --tokenizer jieba     # compare a tokenization
    .venv/bin/python benchmarks/kb_retrieval.py --kb /tmp/all.sqlite  # reuse an index built before (kept with --keep)
    .venv/bin/python benchmarks/kb_retrieval.py --plain               # BM25 alone: no law-name / crime boosts

LawBench 3-2 (../shared/data/raw/lawbench/zero_shot/3-2.json): 500 scenario questions, each answer cites one
article ("根据《农民专业合作社法》第五十六条…"). The cited (law, article) is read from the answer with the
citation finder; questions whose citation does not resolve to an article in the index are counted and skipped.
Prints the build time, median / p95 query time, and recall@1/5/20 of the cited article and of its law.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "raw"
sys.path.insert(0, str(ROOT / "src"))

from lawtune.kb import retrieval, sqlite_store  # noqa: E402
from lawtune.kb.build import build  # noqa: E402
from lawtune.kb.citations import find_citations  # noqa: E402
from lawtune.kb.names import LawNames  # noqa: E402
from lawtune.kb.sqlite_store import SqliteStore  # noqa: E402

KS = (1, 5, 20)
# LawBench answers name laws by category ("《社会法类中的残疾人保障法》", "民法典类中的婚姻家庭编的第…条")
CATEGORY_RE = re.compile(r"[^《》，。、\s]{1,12}类中的")
CIVIL_CODE_PART_RE = re.compile(r"民法典(?:[^《》，。\s]{1,8}?编)")


def gold_text(answer: str) -> str:
    return CIVIL_CODE_PART_RE.sub("民法典", CATEGORY_RE.sub("", answer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laws", default=str(SHARED / "laws_lawrefbook"))
    parser.add_argument("--questions", default=str(SHARED / "lawbench" / "zero_shot" / "3-2.json"))
    parser.add_argument("--tokenizer", default="bigram")
    parser.add_argument("--kb", help="an index built before (skips the build)")
    parser.add_argument("--keep", help="keep the built index at this path")
    parser.add_argument("--plain", action="store_true", help="BM25 alone (text_search), no boosts")
    parser.add_argument("--all-versions", action="store_true", help="search outdated versions too")
    parser.add_argument("--weights", help="BM25 column weights law,path,text (default: sqlite_store.WEIGHTS)")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()

    if args.kb:
        kb_path, build_s = Path(args.kb), None
    else:
        kb_path = Path(args.keep or Path(tempfile.mkdtemp()) / "all.sqlite")
        kb_path.unlink(missing_ok=True)
        start, cpu_start = time.perf_counter(), time.process_time()
        counts = build([args.laws], kb_path, tokenizer=args.tokenizer)
        build_s = time.perf_counter() - start
        print(f"build: {counts} in {build_s:.1f} s wall, {time.process_time() - cpu_start:.1f} s CPU "
              f"({kb_path.stat().st_size / 1e6:.0f} MB, tokenizer {args.tokenizer})")

    if args.weights:
        sqlite_store.WEIGHTS = tuple(float(w) for w in args.weights.split(","))
    store = SqliteStore.open(kb_path)
    catalog = store.catalog()
    names = LawNames([*catalog.versions, *catalog.repealed])
    questions = json.loads(Path(args.questions).read_text(encoding="utf-8"))[: args.limit or None]

    hits_article = {k: 0 for k in KS}
    hits_law = {k: 0 for k in KS}
    times: list[float] = []
    cpu_times: list[float] = []  # this process's CPU time: comparable on a machine shared with other jobs
    evaluated = unresolved = 0
    store.search("预热", k=1)  # build the retriever's name index outside the timed queries
    for record in questions:
        gold = next((c for c in find_citations(gold_text(record["answer"]), names) if c.article and c.law_full), None)
        if gold is None or store.lookup(gold.law_full, gold.article, gold.sub) is None:
            unresolved += 1
            continue
        query = record["question"].removeprefix("场景:").removeprefix("场景：")
        start, cpu_start = time.perf_counter(), time.process_time()
        if args.plain:
            hits = store.text_search(query, max(KS), current_only=not args.all_versions)
        else:
            hits = store.search(query, max(KS), current_only=not args.all_versions)
        times.append((time.perf_counter() - start) * 1000)
        cpu_times.append((time.process_time() - cpu_start) * 1000)
        evaluated += 1
        for k in KS:
            top = hits[:k]
            hits_article[k] += any((h.item.law_full, h.item.article, h.item.sub) == (gold.law_full, gold.article, gold.sub) for h in top)
            hits_law[k] += any(h.item.law_full == gold.law_full for h in top)

    times.sort()
    cpu_times.sort()
    print(f"questions: {evaluated} evaluated, {unresolved} skipped (cited article not in the index)")
    print(f"query ms: median {statistics.median(times):.1f}, p95 {times[int(len(times) * 0.95)]:.1f} wall; "
          f"median {statistics.median(cpu_times):.1f}, p95 {cpu_times[int(len(cpu_times) * 0.95)]:.1f} CPU")
    mode = "plain BM25" if args.plain else f"search (law boost {retrieval.LAW_BOOST})"
    mode += f", weights {sqlite_store.WEIGHTS}, {'all versions' if args.all_versions else 'current versions'}"
    print(f"{mode}, tokenizer {store.tokenizer}:")
    print("  recall@k article: " + "  ".join(f"@{k} {hits_article[k] / evaluated:.3f}" for k in KS))
    print("  recall@k law:     " + "  ".join(f"@{k} {hits_law[k] / evaluated:.3f}" for k in KS))
    if build_s is not None:
        print(f"  build s: {build_s:.1f}")
    store.close()


if __name__ == "__main__":
    main()
