"""Retrieval on every real-question set, each reported separately: recall@1/5/20/100, hit@5, misses by cause.

    .venv/bin/python benchmarks/retrieval_sets.py --stard /tmp/lawtune-fetched/STARD     # write the sets first
                                                   # (stard_dev: held out; stard_train: trained on)
    flock /tmp/lawtune-heavy.lock .venv/bin/python benchmarks/kb_retrieval_sets.py --keep /tmp/all.sqlite
    .venv/bin/python benchmarks/kb_retrieval_sets.py --kb /tmp/all.sqlite --sets out/retrieval_sets --articles-only
    .venv/bin/python benchmarks/kb_retrieval_sets.py --kb postgresql://lawtune@127.0.0.1:5432/kb   # PostgreSQL

Builds a KB over all of LawRefBook as `lawtune kb build ../shared/data/raw/laws_lawrefbook -o KB` does (or takes
--kb), then runs the questions of every `*.jsonl` set in --sets (benchmarks/retrieval_sets.py writes them)
through ONE batch search — `lawtune.kb.batch.search_many`, the code path of `lawtune kb search --queries` —
top 100, current versions unless --all-versions.

Per set, over the questions with at least one gold article:
- recall@k: the share of a question's gold articles in the top k, averaged over questions; hit@5: the share of
  questions with any gold article in the top 5. "law": the same over the gold articles' laws.
- A gold article is found as kb_retrieval.py finds a provision: the version's article the set's `reference`
  text paraphrases best (the current version when there is no reference), or the current article it became
  (`current_article`: renumbered provisions count as found under their number today).
- Misses at 5, per gold article: not in the KB (law unknown, no such article, or the current version dropped
  it); the gold law not in the top 5; the right law but other articles; the last two by the gold's rank
  (6–20, 21–100, beyond 100).
- Query time: CPU time of each search (this process, plus a local PostgreSQL server's), median and p95.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "raw"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kb_retrieval import cited_version, cpu_seconds  # noqa: E402
from lawtune.kb import open_store, postgres_store, retrieval  # noqa: E402
from lawtune.kb.batch import Query, search_many  # noqa: E402
from lawtune.kb.build import build  # noqa: E402
from lawtune.kb.names import LawNames  # noqa: E402
from lawtune.kb.retrieval import Retriever  # noqa: E402
from lawtune.modeling.loading import cpu_flags  # noqa: E402

KS = (1, 5, 20, 100)
BANDS = ((6, 20), (21, 100), (101, None))


@dataclass
class Gold:
    """One gold article of a question, resolved against the KB."""
    law_full: str | None  # None: the KB has no law by that name
    row: tuple | None = None  # (law_full, version, article, sub) of the cited version's article
    now: tuple | None = None  # (law_full, article, sub) of the current article it became
    missing: str = ""  # why it cannot be found: unknown law / no such article / dropped by the current version

    def matches(self, item) -> bool:
        return ((item.law_full, item.version, item.article, item.sub) == self.row
                or (self.now is not None and item.current and (item.law_full, item.article, item.sub) == self.now))


@dataclass
class SetScore:
    name: str
    questions: int = 0
    golds: int = 0
    in_kb: int = 0
    recall: Counter = field(default_factory=Counter)  # k -> summed per-question recall
    law_recall: Counter = field(default_factory=Counter)
    hit5: int = 0
    law_hit5: int = 0
    misses: Counter = field(default_factory=Counter)
    cpu_ms: list[float] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=Path, default=ROOT / "out" / "retrieval_sets", help="folder of *.jsonl sets")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these sets only (file names without .jsonl)")
    parser.add_argument("--laws", default=str(SHARED / "laws_lawrefbook"))
    parser.add_argument("--kb", help="an index built before (skips the build): a file or a postgresql:// URL")
    parser.add_argument("--keep", help="keep the built index at this path")
    parser.add_argument("--all-versions", action="store_true", help="search outdated versions too")
    parser.add_argument("--articles-only", action="store_true", help="kinds=('article',): no Q&A items in the hits")
    parser.add_argument("--limit", type=int, default=0, help="first N questions of each set")
    parser.add_argument("--details", type=Path, help="write each question's gold ranks here (JSONL)")
    parser.add_argument("--dense-weight", type=float, default=retrieval.DENSE_WEIGHT,
                        help="weight of the learned retriever's cosine (retrieval.DENSE_WEIGHT); 0: BM25 and the rest only")
    parser.add_argument("--memory-weight", type=float, default=retrieval.MEMORY_WEIGHT,
                        help="weight of the question memory's votes (retrieval.MEMORY_WEIGHT); 0: off")
    args = parser.parse_args()
    retrieval.DENSE_WEIGHT = args.dense_weight
    retrieval.MEMORY_WEIGHT = args.memory_weight

    sets = read_sets(args.sets, args.only, args.limit)
    print(f"CPU: {platform.processor() or platform.machine()}, flags: "
          f"{' '.join(f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if f in cpu_flags()) or 'none of avx2/avx512'}")
    if args.kb:
        kb_path = args.kb
    else:
        kb_path = Path(args.keep or Path(tempfile.mkdtemp()) / "all.sqlite")
        kb_path.unlink(missing_ok=True)
        start, cpu_start = time.perf_counter(), time.process_time()
        counts = build([args.laws], kb_path)
        print(f"build: {counts} in {time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu_start:.1f} s CPU "
              f"({kb_path.stat().st_size / 1e6:.0f} MB)")

    store = open_store(kb_path)
    backend = "postgres" if postgres_store.is_postgres_url(kb_path) else "sqlite"
    server_pid = store.db.info.backend_pid if backend == "postgres" else None
    catalog = store.catalog()
    names = LawNames([*catalog.versions, *catalog.repealed])
    golds = {(name, r["id"]): [resolve(store, catalog, names, g, r.get("reference", "")) for g in r["gold"]]
             for name, records in sets.items() for r in records}

    # one batch over every set's questions, as `kb search --queries` runs them
    queries = [Query(0, r["question"], f"{name}\t{r['id']}") for name, records in sets.items() for r in records]
    kinds = ("article",) if args.articles_only else ("article", "qa")
    retriever = Retriever(store)
    retriever.search("预热", k=1)  # the first search reads the KB's law names and dense index: outside the timings
    scores = {name: SetScore(name) for name in sets}
    details = []
    for result in search_many(retriever, queries, max(KS), current_only=not args.all_versions, kinds=kinds,
                              clock=lambda: cpu_seconds(server_pid)):
        name, qid = result.query.id.split("\t", 1)
        ranks = score_question(scores[name], golds[(name, qid)], result.hits, result.cpu_ms)
        details.append({"set": name, "id": qid, "ranks": ranks, "cpu_ms": round(result.cpu_ms, 1)})
    print(f"KB {postgres_store.shown_url(kb_path) if backend == 'postgres' else kb_path} ({backend}, tokenizer "
          f"{store.tokenizer}, {store.count()}), {'all versions' if args.all_versions else 'current versions'}"
          f"{', articles only' if args.articles_only else ''}, top {max(KS)}; {len(queries)} questions in one batch")
    store.close()
    print_table(scores.values())
    if args.details:
        args.details.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in details), encoding="utf-8")


def read_sets(folder: Path, only: list[str] | None, limit: int) -> dict[str, list[dict]]:
    paths = sorted(folder.glob("*.jsonl"))
    if only:
        paths = [p for p in paths if p.stem in only]
    if not paths:
        raise SystemExit(f"{folder}: no *.jsonl sets{' named ' + ', '.join(only) if only else ''}; "
                         "write them with benchmarks/retrieval_sets.py")
    sets = {}
    for path in paths:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        sets[path.stem] = [r for r in records if r["gold"]][: limit or None]
    return sets


def resolve(store, catalog, names: LawNames, gold: dict, reference: str) -> Gold:
    """The KB rows a gold {"law", "article", "sub"} stands for (see the module docstring)."""
    law_full = names.resolve(gold["law"])
    if law_full is None or law_full not in catalog.versions:
        return Gold(None, missing="law not in the KB")
    article, sub = gold["article"], gold.get("sub", 0)
    current = store.lookup(law_full, article, sub)
    item = current if current is not None and not reference else cited_version(store, catalog, law_full, article, sub, reference)
    if item is None:
        return Gold(law_full, missing="no such article in the KB")
    now = (law_full, item.current_article, item.current_sub) if item.current_article else None
    if item.current:
        now = (law_full, item.article, item.sub)
    gold_row = Gold(law_full, (law_full, item.version, item.article, item.sub), now)
    if now is None:
        gold_row.missing = "the current version dropped it"
    return gold_row


def score_question(score: SetScore, golds: list[Gold], hits, cpu_ms: float) -> list[int | None]:
    """Add one question to its set's counts; returns each gold's rank (1-based, None beyond the hits)."""
    score.questions += 1
    score.golds += len(golds)
    score.cpu_ms.append(cpu_ms)
    ranks = [next((n for n, h in enumerate(hits, 1) if g.row and g.matches(h.item)), None) for g in golds]
    laws = {g.law_full for g in golds if g.law_full}
    law_ranks = {law: next((n for n, h in enumerate(hits, 1) if h.item.law_full == law), None) for law in laws}
    n_laws = len({g.law_full or f"?{i}" for i, g in enumerate(golds)})  # unknown laws count, and never match
    for k in KS:
        score.recall[k] += sum(r is not None and r <= k for r in ranks) / len(golds)
        score.law_recall[k] += sum(r is not None and r <= k for r in law_ranks.values()) / n_laws
    score.hit5 += any(r is not None and r <= 5 for r in ranks)
    score.law_hit5 += any(r is not None and r <= 5 for r in law_ranks.values())
    for gold, rank in zip(golds, ranks):
        score.in_kb += not gold.missing
        if rank is not None and rank <= 5:
            continue
        if gold.missing:
            score.misses[f"not in KB: {gold.missing}"] += 1
            continue
        law_rank = law_ranks[gold.law_full]
        cause = "right law, other articles" if law_rank is not None and law_rank <= 5 else "law not in the top 5"
        score.misses[f"{cause}, rank {band(rank)}"] += 1
    return ranks


def band(rank: int | None) -> str:
    for low, high in BANDS:
        if rank is None and high is None or rank is not None and rank >= low and (high is None or rank <= high):
            return f"{low}–{high}" if high else f">{low - 1}"
    raise ValueError(rank)



MISS_ORDER = ["not in KB: law not in the KB", "not in KB: no such article in the KB",
              "not in KB: the current version dropped it",
              *(f"{cause}, rank {band(rank)}" for cause in ("law not in the top 5", "right law, other articles")
                for rank in (6, 21, None))]

def print_table(scores) -> None:
    print("\n| set | questions | gold in KB | recall@1 / @5 / @20 / @100 article | hit@5 article | "
          "recall@1 / @5 / @20 / @100 law | hit@5 law | query CPU median / p95 |")
    print("|---|---|---|---|---|---|---|---|")
    for s in scores:
        q = s.questions
        times = sorted(s.cpu_ms)
        print(f"| {s.name} | {q} | {s.in_kb / s.golds:.0%} of {s.golds} | "
              + " / ".join(f"{s.recall[k] / q:.3f}" for k in KS) + f" | {s.hit5 / q:.3f} | "
              + " / ".join(f"{s.law_recall[k] / q:.3f}" for k in KS) + f" | {s.law_hit5 / q:.3f} | "
              f"{statistics.median(times):.0f} / {times[int(len(times) * 0.95)]:.0f} ms |")
    print("\nMisses at 5 (gold articles not in the top 5), by cause and the gold's rank:")
    for s in scores:
        total = sum(s.misses.values())
        print(f"  {s.name}: {total} of {s.golds}")
        for cause in MISS_ORDER:
            if s.misses[cause]:
                print(f"    {cause}: {s.misses[cause]}")


if __name__ == "__main__":
    main()
