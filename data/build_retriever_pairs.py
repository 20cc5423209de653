"""Write src/lawtune/kb/retriever_pairs.jsonl: real questions with the articles their answers cite.

    mkdir -p /tmp/lawtune-fetched/STARD                 # STARD's train split: name the files (the snapshot lacks
    git --git-dir=/work/.mirror/oneal2000+STARD/repo archive HEAD LICENSE data/queries.json \\
        data/example/dev.query.txt data/example/train.query.txt data/example/qrels.dev.tsv data/example/qrels.train.tsv \\
        | tar -x -C /tmp/lawtune-fetched/STARD          # the big corpus files; archiving their folder fails)
    .venv/bin/python data/build_retriever_pairs.py --stard /tmp/lawtune-fetched/STARD   # + ../shared/data/raw

The dense retriever that `kb build` trains (src/lawtune/kb/dense.py) learns a layperson's words from these.
Deterministic; see src/lawtune/kb/retriever_pairs.SOURCE.md for what each source is and its licence.

Kept apart on purpose: the dev and test questions of `legal_counsel_with_article_v2.json` (as `lawtune prepare`
splits that file with its default seed and ratios: benchmarks/retrieval_sets.py reports them as `consult_dev`,
and the RAG evaluation answers its test split), every LawBench question, and STARD's dev split (`stard_dev`, the
held-out consultation set). Only STARD's own train split (data/example/train.query.txt) is used, and of it no
question that is a near-duplicate (character-bigram Jaccard ≥ NEAR_DUPLICATE) of any held-out question above.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT.parent / "shared" / "data" / "raw"
OUT = ROOT / "src" / "lawtune" / "kb" / "retriever_pairs.jsonl"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lawtune.data.cleaning import key_hash  # noqa: E402
from lawtune.data.prepare import run as prepare  # noqa: E402
from lawtune.fsutil import atomic_write_text  # noqa: E402
from lawtune.kb.laws import find_law_files, parse_law_file  # noqa: E402
from lawtune.kb.versions import MIN_SIMILARITY, provision_bigrams, similarity  # noqa: E402
from retrieval_sets import NearDuplicates, law_names, parse_reference, prepared_splits, question_text  # noqa: E402

CITE_RE = re.compile(r"《[^》]{1,40}》第[一二三四五六七八九十百千零〇0-9]+条(?:之[一二三四五六七八九十])?")
MAX_CITES = 4
STARD_SOURCE = "STARD train split (github.com/oneal2000/STARD @ bae10e1, MIT)"


def records(name: str) -> list[dict]:
    data = json.loads((RAW / "lawyer_llama" / f"{name}.json").read_text(encoding="utf-8"))
    return [r[0] if isinstance(r, list) else r for r in data]


def train_questions(path: Path) -> set[int]:
    """Hashes of the questions `lawtune prepare PATH` puts in its train split (default seed and ratios)."""
    with tempfile.TemporaryDirectory() as folder:
        prepare([path], Path(folder))
        lines = (Path(folder) / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return {key_hash(next(t["content"] for t in json.loads(line)["conversations"] if t["role"] == "user"))
            for line in lines}


def cites(text: str) -> list[str]:
    return list(dict.fromkeys(m.group(0) for m in CITE_RE.finditer(text)))[:MAX_CITES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stard", type=Path, required=True,
                        help="an exported STARD snapshot holding data/queries.json and data/example/ (see above)")
    args = parser.parse_args()

    held_out = NearDuplicates(held_out_questions(args.stard))
    pairs = [*lawyer_llama_pairs(), *stard_train_pairs(args.stard)]
    kept = [p for p in pairs if not held_out.matches(p["question"])]
    for source in dict.fromkeys(p["source"] for p in pairs):
        dropped = sum(p["source"] == source for p in pairs) - sum(p["source"] == source for p in kept)
        print(f"{source}: {sum(p['source'] == source for p in kept)} questions"
              f"{f' ({dropped} dropped: near-duplicates of held-out questions)' if dropped else ''}")
    atomic_write_text(OUT, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in kept))
    print(f"{OUT}: {len(kept)} questions")


def lawyer_llama_pairs() -> list[dict]:
    pairs = []
    for record in records("zixun_gpt4"):
        pairs.append(("zixun_gpt4", record["query"], cites(" ".join(record["laws"]))))
    train = train_questions(RAW / "lawyer_llama" / "legal_counsel_with_article_v2.json")
    for record in records("legal_counsel_with_article_v2"):
        if key_hash(record["query"]) in train:
            pairs.append(("legal_counsel_with_article_v2 (prepare's train split)", record["query"],
                          cites(" ".join(record["laws"]))))
    for record in records("fakao_gpt4"):
        pairs.append(("fakao_gpt4", record["input"], cites(record["output"])))
    for record in records("judical_examination"):
        question = record["instruction"].split("\n请给出")[0].strip()
        pairs.append(("judical_examination", question, cites(record["output"].replace("第X条", ""))))
    return [{"question": q.strip(), "cites": c, "source": s} for s, q, c in pairs if c and q.strip()]


ANSWER_SOURCES = ("legal_advice", "own")


def answer_pairs(sources: tuple[str, ...] = ANSWER_SOURCES, chars: int = 300) -> list[dict]:
    """Real consultation questions with the first `chars` characters of their (LLM-written) answers: the answer says
    in the statute's words (配偶, 盗窃, 解除劳动合同) what the question asks in a layperson's (老公, 偷, 辞退), so the
    encoder can be trained to pull one toward the other — over every law the questions touch, articles cited or not.
    `legal_advice`: Lawyer LLaMA's 5,000 hualv.com questions with GPT-3.5 answers (no article cited); `own`: the
    answers of the consultations already in the pairs (zixun_gpt4, legal_counsel_with_article_v2's train split).
    Not filtered here against held-out questions: the caller does that."""
    out = []
    if "legal_advice" in sources:
        out += [("legal_advice", r["instruction"], r["output"]) for r in records("legal_advice")]
    if "own" in sources:
        out += [("zixun_gpt4", r["query"], r["response"]) for r in records("zixun_gpt4")]
        train = train_questions(RAW / "lawyer_llama" / "legal_counsel_with_article_v2.json")
        out += [("legal_counsel_with_article_v2 (prepare's train split)", r["query"], r["response"])
                for r in records("legal_counsel_with_article_v2") if key_hash(r["query"]) in train]
    pairs = []
    for source, question, answer in out:
        question, answer = question.strip(), " ".join(answer.split())[:chars]
        if question and answer:
            pairs.append({"question": question, "answer": answer, "source": source})
    return pairs


def stard_train_pairs(folder: Path) -> list[dict]:
    """STARD's train questions → their articles in the current LawRefBook version of the law they name.

    STARD gives each article's text as it was judged; an amendment may have renumbered it since (公司法 2023,
    行政处罚法 2021 …), and training must point at today's article, the one the KB keeps a vector for. So the
    current article with STARD's number is kept when it is the same provision (versions.similarity ≥
    MIN_SIMILARITY, as the stores link versions), else the current article that is (renumbered), else none.
    `gold` holds the result as {"law": LawRefBook title, "article", "sub"} (STARD's names embed 《》 in judicial
    interpretations' titles, which a 《…》第N条 citation cannot carry); `cites` keeps STARD's own names. A
    question with no article left is dropped."""
    data = folder / "data"
    names = law_names(RAW / "laws_lawrefbook")
    by_id = {r["query_id"]: r for r in json.loads((data / "queries.json").read_text(encoding="utf-8"))}
    train = [by_id[query_id] for query_id in split_ids(data / "example" / "train.query.txt")]
    wanted = [(name, record["相关法规"].get(name, "")) for record in train for name in dict.fromkeys(record["match_name"])]
    current = current_articles({law for name, _ in wanted if (law := resolved_law(name, names))})
    found, tally = {}, Counter()
    for name, text in wanted:
        found[name], outcome = current_provision(name, text, names, current)
        tally[outcome] += 1
    pairs = []
    for record in train:
        gold = [found[name] for name in dict.fromkeys(record["match_name"]) if found[name]]
        if gold:
            pairs.append({"question": record["问题"].strip(), "cites": list(dict.fromkeys(record["match_name"])),
                          "gold": gold, "source": STARD_SOURCE, "query_id": record["query_id"]})
    print(f"STARD train: {len(wanted)} gold articles: {', '.join(f'{n} {k}' for k, n in tally.most_common())}; "
          f"{len(pairs)} of {len(train)} questions keep at least one")
    return pairs


def resolved_law(name: str, names) -> str | None:
    reference = parse_reference(name, names)
    return names.resolve(reference["law"]) if reference else None


def current_articles(laws: set[str]) -> dict[str, dict[tuple[int, int], frozenset[str]]]:
    """law title → (article, sub) → the provision's bigrams, of each law's latest LawRefBook version."""
    versions: dict[str, dict[str, list]] = {}  # title → version → articles (民法典 is one file per 编)
    for path in find_law_files([RAW / "laws_lawrefbook"]):
        with path.open(encoding="utf-8-sig") as handle:
            title = next((line[2:].strip() for line in handle if line.startswith("# ")), "")
        if title in laws:
            law = parse_law_file(path)
            versions.setdefault(law.full_name, {}).setdefault(law.version, []).extend(law.articles)
    return {title: {(a.article, a.sub): provision_bigrams(a.text) for a in by_version[max(by_version)]}
            for title, by_version in versions.items()}


def current_provision(name: str, text: str, names, current: dict) -> tuple[dict | None, str]:
    """({"law", "article", "sub"} of today's article STARD's `name` (judged as `text`) is, or None; what happened)."""
    reference = parse_reference(name, names)
    law = names.resolve(reference["law"]) if reference else None
    if law not in current:
        return None, "law not in LawRefBook"
    articles, grams = current[law], provision_bigrams(text)
    key = (reference["article"], reference["sub"])
    if key in articles and (not grams or similarity(grams, articles[key]) >= MIN_SIMILARITY):
        return {"law": law, "article": key[0], "sub": key[1]}, "same number"
    best = max(articles, key=lambda k: similarity(grams, articles[k]), default=None)
    if best is not None and similarity(grams, articles[best]) >= MIN_SIMILARITY:
        return {"law": law, "article": best[0], "sub": best[1]}, "renumbered"
    return None, "no such provision today" if key not in articles else "text changed beyond recognition"


def split_ids(path: Path) -> list[int]:
    return [int(line.split("\t", 1)[0]) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def held_out_questions(stard: Path) -> list[str]:
    """Every question a benchmark reports as held out: STARD dev, consult_dev, LawBench 3-1 / 3-2 / 3-8."""
    data = stard / "data"
    by_id = {r["query_id"]: r for r in json.loads((data / "queries.json").read_text(encoding="utf-8"))}
    questions = [by_id[i]["问题"] for i in split_ids(data / "example" / "dev.query.txt")]
    path = RAW / "lawyer_llama" / "legal_counsel_with_article_v2.json"
    splits = prepared_splits(path)
    questions += [r["query"] for r in json.loads(path.read_text(encoding="utf-8"))
                  if splits.get(key_hash(r["query"])) in ("dev", "test")]
    for task in ("3-1", "3-2", "3-8"):
        for record in json.loads((RAW / "lawbench" / "zero_shot" / f"{task}.json").read_text(encoding="utf-8")):
            questions.append(question_text(record) if task == "3-2" else record["question"])
    return questions


if __name__ == "__main__":
    main()
