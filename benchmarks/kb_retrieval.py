"""Law-article retrieval on real questions: LawBench 3-2 against an index of all of LawRefBook.

    .venv/bin/python benchmarks/kb_retrieval.py                       # build with the default tokenizer, evaluate
    .venv/bin/python benchmarks/kb_retrieval.py --tokenizer jieba     # compare a tokenization
    .venv/bin/python benchmarks/kb_retrieval.py --kb /tmp/all.sqlite  # reuse an index built before (kept with --keep)
    .venv/bin/python benchmarks/kb_retrieval.py --plain               # BM25 alone: no law-name / crime boosts
    .venv/bin/python benchmarks/kb_retrieval.py --postgres postgresql://lawtune@127.0.0.1:5432/kb   # build there
    .venv/bin/python benchmarks/kb_retrieval.py --kb postgresql://lawtune@127.0.0.1:5432/kb         # reuse it
    .venv/bin/python benchmarks/kb_retrieval.py --qa ../shared/data/raw/lawyer_llama/{legal_counsel_with_article_v2,zixun_gpt4}.json
    .venv/bin/python benchmarks/kb_retrieval.py --kb /tmp/all_qa.sqlite --no-bridge   # same index, Q&A bridge off

LawBench 3-2 (../shared/data/raw/lawbench/zero_shot/3-2.json): 500 scenario questions, each answer cites one
article ("根据《农民专业合作社法》第五十六条…"). The cited (law, article) is read from the answer with the
citation finder; questions whose citation does not resolve to an article in the index are counted and skipped.
Prints the build time, median / p95 query time, and recall@1/5/20 of the cited article and of its law.

`--qa FILE...` indexes Q&A files too (conversations JSONL, or Lawyer LLaMA's {"query", "response", "laws"}
JSON): their cited articles vote in search (retrieval.py, the Q&A bridge; `--no-bridge` turns it off). The
script reports how many questions occur verbatim (or as any 20-character window) in the Q&A files: a leak.
`--questions` may also be a {"query", "laws"} file (Lawyer LLaMA's layout): the gold is then every cited article,
and recall@k counts a question when any of them is in the top k (use a Q&A file that is not indexed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "raw"
sys.path.insert(0, str(ROOT / "src"))

from lawtune.environment import configure  # noqa: E402

configure()  # as the `lawtune` command does, before numpy loads: one OpenBLAS thread
from lawtune.kb import open_store, postgres_store, retrieval, sqlite_store  # noqa: E402
from lawtune.kb.build import build  # noqa: E402
from lawtune.kb.citations import find_citations  # noqa: E402
from lawtune.kb.names import LawNames  # noqa: E402
from lawtune.kb.retrieval import Retriever  # noqa: E402
from lawtune.kb.versions import provision_bigrams  # noqa: E402

KS = (1, 5, 20)
# LawBench answers name laws by category ("《社会法类中的残疾人保障法》", "民法典类中的婚姻家庭编的第…条")
CATEGORY_RE = re.compile(r"[^《》，。、\s]{1,12}类中的")
CIVIL_CODE_PART_RE = re.compile(r"民法典(?:[^《》，。\s]{1,8}?编)")


def gold_text(answer: str) -> str:
    return CIVIL_CODE_PART_RE.sub("民法典", CATEGORY_RE.sub("", answer))


def cpu_seconds(server_pid: int | None = None) -> float:
    """CPU seconds of this process, plus those of a local PostgreSQL backend process (from /proc) if given."""
    seconds = time.process_time()
    if server_pid:
        try:
            fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except (OSError, IndexError, ValueError):
            pass  # a remote server: this process's CPU only
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laws", default=str(SHARED / "laws_lawrefbook"))
    parser.add_argument("--questions", default=str(SHARED / "lawbench" / "zero_shot" / "3-2.json"))
    parser.add_argument("--tokenizer", default="bigram")
    parser.add_argument("--kb", help="an index built before (skips the build): a file or a postgresql:// URL")
    parser.add_argument("--postgres", metavar="URL", help="build into this PostgreSQL database (replacing its KB)")
    parser.add_argument("--keep", help="keep the built index at this path")
    parser.add_argument("--plain", action="store_true", help="BM25 alone (text_search), no boosts")
    parser.add_argument("--all-versions", action="store_true", help="search outdated versions too")
    parser.add_argument("--weights", help="BM25 column weights law,path,text (default: sqlite_store.WEIGHTS)")
    parser.add_argument("--qa", nargs="+", default=[], metavar="FILE", help="Q&A files to index with the laws")
    parser.add_argument("--no-bridge", action="store_true", help="no Q&A votes (retrieval.BRIDGE_WEIGHT = 0)")
    parser.add_argument("--bridge-weight", type=float, help=f"default retrieval.BRIDGE_WEIGHT = {retrieval.BRIDGE_WEIGHT}")
    parser.add_argument("--fusion", choices=("rrf", "sum"), help=f"default retrieval.FUSION = {retrieval.FUSION}")
    parser.add_argument("--qa-from-pool", choices=("yes", "no"), help=f"default retrieval.QA_FROM_POOL = {retrieval.QA_FROM_POOL}")
    parser.add_argument("--qa-voters", type=int, help=f"default retrieval.QA_VOTERS = {retrieval.QA_VOTERS}")
    parser.add_argument("--ask-weight", type=float, help=f"default retrieval.ASK_WEIGHT = {retrieval.ASK_WEIGHT} (0: off)")
    parser.add_argument("--char-weight", type=float, help=f"default retrieval.CHAR_WEIGHT = {retrieval.CHAR_WEIGHT} "
                        "(the candidates' single-character BM25 added; 0: off)")
    parser.add_argument("--no-fold", action="store_true", help="current versions only, no matching of older "
                        "versions' wording (retrieval.FOLD_VERSIONS = False)")
    parser.add_argument("--articles-only", action="store_true", help="search kinds=('article',): no Q&A items in the hits")
    parser.add_argument("--memory-weight", type=float, help=f"default retrieval.MEMORY_WEIGHT = {retrieval.MEMORY_WEIGHT} (0: off)")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()

    if args.kb:
        kb_path, build_s = args.kb, None
    elif args.postgres:
        kb_path = args.postgres
        start = time.perf_counter()
        counts = build([args.laws, *args.qa], kb_path, tokenizer=args.tokenizer)
        build_s = time.perf_counter() - start
        print(f"build: {counts} in {build_s:.1f} s (PostgreSQL {postgres_store.shown_url(kb_path)}, "
              f"tokenizer {args.tokenizer})")
    else:
        kb_path = Path(args.keep or Path(tempfile.mkdtemp()) / "all.sqlite")
        kb_path.unlink(missing_ok=True)
        start, cpu_start = time.perf_counter(), time.process_time()
        counts = build([args.laws, *args.qa], kb_path, tokenizer=args.tokenizer)
        build_s = time.perf_counter() - start
        print(f"build: {counts} in {build_s:.1f} s wall, {time.process_time() - cpu_start:.1f} s CPU "
              f"({kb_path.stat().st_size / 1e6:.0f} MB, tokenizer {args.tokenizer})")

    if args.weights:
        sqlite_store.WEIGHTS = postgres_store.WEIGHTS = tuple(float(w) for w in args.weights.split(","))
    if args.no_bridge:
        retrieval.BRIDGE_WEIGHT = 0.0
    if args.bridge_weight is not None:
        retrieval.BRIDGE_WEIGHT = args.bridge_weight
    if args.fusion:
        retrieval.FUSION = args.fusion
    if args.qa_from_pool:
        retrieval.QA_FROM_POOL = args.qa_from_pool == "yes"
    if args.ask_weight is not None:
        retrieval.ASK_WEIGHT = args.ask_weight
    if args.no_fold:
        retrieval.FOLD_VERSIONS = False
    if args.char_weight is not None:
        retrieval.CHAR_WEIGHT = args.char_weight
    if args.qa_voters is not None:
        retrieval.QA_VOTERS = args.qa_voters
    if args.memory_weight is not None:
        retrieval.MEMORY_WEIGHT = args.memory_weight
    store = open_store(kb_path)
    backend = "postgres" if postgres_store.is_postgres_url(kb_path) else "sqlite"
    # PostgreSQL does the query work in its server process: count that process's CPU too (when it is local)
    server_pid = store.db.info.backend_pid if backend == "postgres" else None
    catalog = store.catalog()
    names = LawNames([*catalog.versions, *catalog.repealed])
    questions = json.loads(Path(args.questions).read_text(encoding="utf-8"))[: args.limit or None]
    if args.qa:
        leaks = check_leaks([question_text(r) for r in questions], args.qa)
        print(f"leak check: {leaks} of {len(questions)} questions occur in the Q&A files (verbatim or a 20-char window)")

    hits_article = {k: 0 for k in KS}
    hits_law = {k: 0 for k in KS}
    hits_provision = {k: 0 for k in KS}
    times: list[float] = []
    cpu_times: list[float] = []  # this process's CPU time: comparable on a machine shared with other jobs
    evaluated = unresolved = qa_in_top5 = 0
    retriever = Retriever(store)
    retriever.search("预热", k=1)  # the first search reads the KB's law names and dense index: outside the timings
    for record in questions:
        if "answer" in record:  # LawBench: the first citation in the answer
            cited = [c for c in find_citations(gold_text(record["answer"]), names) if c.article and c.law_full][:1]
        else:  # Lawyer LLaMA: every "《民法典》第N条：text" in laws
            cited = [c for law in record["laws"] for c in find_citations(law.split("：", 1)[0], names)]
        gold = {(c.law_full, c.article, c.sub) for c in cited
                if c.article and c.law_full and store.lookup(c.law_full, c.article, c.sub) is not None}
        # the cited provisions: the version's article the answer quotes, and its number in the current version
        cited_rows = [cited_version(store, catalog, *ref, record.get("answer", "")) for ref in gold]
        gold_rows = {(i.law_full, i.version, i.article, i.sub) for i in cited_rows}
        gold_now = {(i.law_full, i.current_article, i.current_sub) for i in cited_rows if i.current_article}
        if not gold:
            unresolved += 1
            continue
        query = question_text(record)
        start, cpu_start = time.perf_counter(), cpu_seconds(server_pid)
        if args.plain:
            hits = store.text_search(query, max(KS), current_only=not args.all_versions)
        else:
            hits = retriever.search(query, max(KS), current_only=not args.all_versions,
                                    kinds=("article",) if args.articles_only else ("article", "qa"))
        times.append((time.perf_counter() - start) * 1000)
        cpu_times.append((cpu_seconds(server_pid) - cpu_start) * 1000)
        evaluated += 1
        for k in KS:
            top = hits[:k]
            hits_article[k] += any((h.item.law_full, h.item.article, h.item.sub) in gold for h in top)
            hits_provision[k] += any((h.item.law_full, h.item.version, h.item.article, h.item.sub) in gold_rows
                                     or (h.item.current and (h.item.law_full, h.item.article, h.item.sub) in gold_now)
                                     for h in top)
            hits_law[k] += any(h.item.law_full in {law for law, _, _ in gold} for h in top)
        qa_in_top5 += sum(h.item.kind == "qa" for h in hits[:5])

    times.sort()
    cpu_times.sort()
    print(f"questions: {evaluated} evaluated, {unresolved} skipped (cited article not in the index)")
    print(f"query ms: median {statistics.median(times):.1f}, p95 {times[int(len(times) * 0.95)]:.1f} wall; "
          f"median {statistics.median(cpu_times):.1f}, p95 {cpu_times[int(len(cpu_times) * 0.95)]:.1f} CPU")
    mode = "plain BM25" if args.plain else (f"search (law boost {retrieval.LAW_BOOST}, ask weight "
                                            f"{retrieval.ASK_WEIGHT}, character weight {retrieval.CHAR_WEIGHT}, "
                                            f"fold versions {retrieval.FOLD_VERSIONS}")
    if not args.plain:
        mode += f", Q&A bridge {retrieval.FUSION} weight {retrieval.BRIDGE_WEIGHT}, voters {retrieval.QA_VOTERS}, from pool {retrieval.QA_FROM_POOL})"
    mode += f", items {store.count()}{', articles only' if args.articles_only else ''}"
    mode += f", weights {(postgres_store if backend == 'postgres' else sqlite_store).WEIGHTS}, {'all versions' if args.all_versions else 'current versions'}"
    print(f"{mode}, tokenizer {store.tokenizer}, backend {backend}:")
    print("  recall@k article, provision in any version: "
          + "  ".join(f"@{k} {hits_provision[k] / evaluated:.3f}" for k in KS))
    print("  recall@k article, number as cited:          "
          + "  ".join(f"@{k} {hits_article[k] / evaluated:.3f}" for k in KS))
    print("  recall@k law:                               " + "  ".join(f"@{k} {hits_law[k] / evaluated:.3f}" for k in KS))
    if qa_in_top5:
        print(f"  Q&A items in the top 5: {qa_in_top5 / evaluated:.2f} per question (they count as misses)")
    if build_s is not None:
        print(f"  build s: {build_s:.1f}")
    store.close()


def cited_version(store, catalog, law: str, article: int, sub: int, answer: str):
    """The article an answer cites as `law` 第`article`条, in the version it was written against.

    Answers written against an older version cite its number, which the current version may give to another
    rule. Of the versions holding that number, the cited one is the one whose text the answer paraphrases best
    (share of the article's bigrams found in the answer). Its `current_article` is the provision's number today
    (0: the current version dropped it).
    """
    answer_grams = provision_bigrams(answer)
    best, best_cover = None, -1.0
    for version in catalog.versions.get(law, []):
        if (article, sub) not in version.articles:
            continue
        item = store.lookup(law, article, sub, version=version.version)
        grams = provision_bigrams(item.text)
        cover = len(grams & answer_grams) / max(1, len(grams))
        if cover > best_cover:
            best, best_cover = item, cover
    return best


def question_text(record: dict) -> str:
    return record["question"].removeprefix("场景:").removeprefix("场景：") if "question" in record else record["query"]


def check_leaks(texts: list[str], qa_files: list[str]) -> int:
    """How many texts occur in the Q&A files, whole or as any 20-character window (step 10)."""
    blob = "\n".join(Path(f).read_text(encoding="utf-8") for f in qa_files)
    blob += "\n" + json.dumps(blob, ensure_ascii=False)  # also match the escaped form inside JSON strings
    return sum(any(t[i:i + 20] in blob for i in range(0, max(1, len(t) - 19), 10)) for t in texts)


if __name__ == "__main__":
    main()
