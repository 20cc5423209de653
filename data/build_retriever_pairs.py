"""Write src/lawtune/kb/retriever_pairs.jsonl: real questions with the articles their answers cite.

    git --git-dir=/work/.mirror/oneal2000+STARD/repo archive HEAD LICENSE data/queries.json data/example \\
        | tar -x -C /tmp/lawtune-fetched/STARD          # STARD's train split (git warns about absent big files)
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT.parent / "shared" / "data" / "raw"
OUT = ROOT / "src" / "lawtune" / "kb" / "retriever_pairs.jsonl"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lawtune.data.cleaning import key_hash  # noqa: E402
from lawtune.data.prepare import run as prepare  # noqa: E402
from lawtune.fsutil import atomic_write_text  # noqa: E402
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


def stard_train_pairs(folder: Path) -> list[dict]:
    """STARD's train questions → their articles, each resolved to the LawRefBook law it names.

    `gold` holds the resolved {"law": LawRefBook title, "article", "sub"} (STARD's names embed 《》 in judicial
    interpretations' titles, which a 《…》第N条 citation cannot carry); `cites` keeps STARD's own names. Articles
    whose law LawRefBook does not hold are left out, and a question with none left is dropped."""
    data = folder / "data"
    names = law_names(RAW / "laws_lawrefbook")
    by_id = {r["query_id"]: r for r in json.loads((data / "queries.json").read_text(encoding="utf-8"))}
    pairs, articles, resolved = [], 0, 0
    for query_id in split_ids(data / "example" / "train.query.txt"):
        record = by_id[query_id]
        gold = []
        for name in dict.fromkeys(record["match_name"]):
            articles += 1
            reference = parse_reference(name, names)
            law_full = names.resolve(reference["law"]) if reference else None
            if law_full:
                resolved += 1
                gold.append({**reference, "law": law_full})
        if gold:
            pairs.append({"question": record["问题"].strip(), "cites": list(dict.fromkeys(record["match_name"])),
                          "gold": gold, "source": STARD_SOURCE, "query_id": query_id})
    print(f"STARD train: {articles} gold articles, {resolved} name a LawRefBook law; "
          f"{len(pairs)} questions with at least one")
    return pairs


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
