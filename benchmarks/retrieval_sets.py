"""Real-question retrieval sets (question → the articles that answer it), written as JSONL for kb_retrieval_sets.py.

    .venv/bin/python benchmarks/retrieval_sets.py                                   # local sets → out/retrieval_sets/
    .venv/bin/python benchmarks/retrieval_sets.py --stard /tmp/lawtune-fetched/STARD -o out/retrieval_sets  # + stard_dev, stard_train

Each output line: {"id", "question", "gold": [{"law": "民法典", "article": 1076, "sub": 0}, ...], "source",
"reference"?}. `law` is the short name (no 中华人民共和国) of the law as LawRefBook titles it when the name
resolves there, else as the source writes it (the benchmark counts such gold as "not in the KB").
`reference` is text that paraphrases the gold (the cited articles' text or the reference answer): the
benchmark uses it to tell which version's article an old article number meant. Nothing here is committed but
this script; the sets are rebuilt from the raw data.

The sets, kept apart from anything tuned on but `stard_train` (the lead tunes only on the TRAIN part of the first
file and on STARD's train split; data/build_retriever_pairs.py drops near-duplicates of every held-out question):

- `consult_dev` — Lawyer LLaMA `legal_counsel_with_article_v2.json` (real hualv.com questions; source:
  github.com/AndrewZhe/lawyer-llama data/, commit abaa095; Apache-2.0 repo, README: academic research only):
  the questions `lawtune prepare` (default seed and ratios) puts in dev or test, found by running
  `lawtune.data.prepare.run` itself on the file; gold = its `laws` (《民法典》第N条, all 民法典).
- `consult_multi` — `legal_counsel_multi_turn_with_article_v2.json` (same source): the first user question of
  each dialogue with its `laws`; questions that also occur (normalized) in the first file's train split are
  dropped. Report-only. (Measured: all 476 are questions of the first file, with the same `laws`; 420 sit in its
  train split, so the 56 left are consult_dev questions — a cross-check, not new evidence.)
- `fakao_cases` — Lawyer LLaMA `fakao_gpt4.json` (same source; real JEC-QA judicial-exam questions, answers
  written by GPT-4 and not verified): the 245 case questions (type qingjing: facts, then "how is this
  handled?") whose answer cites an article → every article it cites (刑法 most, then 合同法 / 民法典 / the
  procedure laws; cited laws since repealed — 合同法, 侵权责任法, 物权法 — are not in LawRefBook and count as
  missing). The gold is an LLM's citations: noisy, but the kind of question case-style checks ask. Report-only:
  do not train on the qingjing part of fakao_gpt4.json.
- `lawbench_3-1` — LawBench 3-1 (github.com/open-compass/LawBench data/zero_shot, commit e30981b; Apache-2.0,
  from CAIL2018, whose licence applies): case facts + charge → the 刑法 articles of the judgment ("法条:刑法第
  234、275条" → 234 and 275).
- `lawbench_3-2` — LawBench 3-2 (same source, scenario → the one article the answer cites; the question and
  gold are read with benchmarks/kb_retrieval.py's parser: the first resolvable citation of the answer). Its
  questions were written from the articles: 3-2's recall@5 is the number the retrieval defaults were tuned on.
- `lawbench_3-8` — LawBench 3-8 (same source; real hualv.com consultations whose reference answer ends with
  "法律依据:《…》第N条 …"): the question → the articles cited after 法律依据 (one in 499 of 500). The project
  also evaluates answers on these questions (data/benchmarks/lawbench_3-8.jsonl); no retrieval setting was
  chosen on them.
- `stard_dev` (with --stard DIR) — STARD (github.com/oneal2000/STARD, commit bae10e1, MIT licence; Su et al.
  2024, "STARD: A Chinese Statute Retrieval Dataset with Real Queries Issued by Non-professionals"): real
  consultation questions by members of the public, with the articles a legal team judged relevant. STARD has its
  own split (data/example/{train,dev}.query.txt, 1,235 / 308). The 308 **dev** questions are the held-out set:
  never trained or tuned on; this set of exactly the kind the project is checked on from outside reproduces those
  checks' numbers.
- `stard_train` (with --stard DIR) — STARD's 1,235 train questions: **trained on** (data/build_retriever_pairs.py
  ships them as retriever pairs, as issue 23 allows for a public set's train split); reported only to show the fit.
  Export the data from a `fetch` snapshot, naming the files (data/corpus.jsonl and data/example/corpus.tsv are
  over 4 MiB and absent from it, so `git archive` of the whole data/example folder fails; they are not needed):
  mkdir -p /tmp/lawtune-fetched/STARD && git --git-dir=/work/.mirror/oneal2000+STARD/repo archive HEAD LICENSE \\
      data/queries.json data/example/dev.query.txt data/example/train.query.txt data/example/qrels.dev.tsv data/example/qrels.train.tsv \\
      | tar -x -C /tmp/lawtune-fetched/STARD
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "raw"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kb_retrieval import gold_text, question_text  # noqa: E402
from lawtune.data.cleaning import key_hash, normalize_key  # noqa: E402
from lawtune.data.prepare import run as prepare  # noqa: E402
from lawtune.fsutil import atomic_write_text  # noqa: E402
from lawtune.kb.citations import find_citations  # noqa: E402
from lawtune.kb.laws import PRC_PREFIX, find_law_files, short_name  # noqa: E402
from lawtune.kb.names import LawNames  # noqa: E402
from lawtune.kb.numerals import NUMERAL_CHARS, to_int  # noqa: E402

# "《民法典》第一千零七十六条：…" (Lawyer LLaMA laws) and "中华人民共和国民法典第五十四条" (STARD match_name)
NAMED_ARTICLE_RE = re.compile(rf"^《?(?P<law>.+?)》?第(?P<num>[{NUMERAL_CHARS}]+)条(?:之(?P<sub>[{NUMERAL_CHARS}]+))?")
LAWBENCH_31_RE = re.compile(r"刑法第([\d、]+)条")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=SHARED, help="the raw data folder (lawyer_llama/, lawbench/, laws_lawrefbook/)")
    parser.add_argument("--stard", type=Path, help="an exported STARD snapshot (holding data/queries.json)")
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "out" / "retrieval_sets")
    args = parser.parse_args()

    names = law_names(args.raw / "laws_lawrefbook")
    sets = {
        "consult_dev": consult_dev(args.raw / "lawyer_llama" / "legal_counsel_with_article_v2.json", names),
        "consult_multi": consult_multi(args.raw / "lawyer_llama", names),
        "fakao_cases": fakao_cases(args.raw / "lawyer_llama" / "fakao_gpt4.json", names),
        "lawbench_3-1": lawbench_31(args.raw / "lawbench" / "zero_shot" / "3-1.json"),
        "lawbench_3-2": lawbench_32(args.raw / "lawbench" / "zero_shot" / "3-2.json", names),
        "lawbench_3-8": lawbench_38(args.raw / "lawbench" / "zero_shot" / "3-8.json", names),
    }
    if args.stard:
        sets["stard_dev"] = stard(args.stard, names, "dev")
        sets["stard_train"] = stard(args.stard, names, "train")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, records in sets.items():
        path = args.out / f"{name}.jsonl"
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        laws = Counter(g["law"] for r in records for g in r["gold"])
        print(f"{path}: {len(records)} questions, {sum(len(r['gold']) for r in records)} gold articles "
              f"({', '.join(f'{law} {n}' for law, n in laws.most_common(3))}, …)")


# ---- law names and article references

def law_names(laws_folder: Path) -> LawNames:
    """Every LawRefBook title (the `# ` line of each file), to resolve the names the sets write."""
    titles = set()
    for path in find_law_files([laws_folder]):
        with path.open(encoding="utf-8-sig") as handle:
            for line in handle:
                if line.startswith("# "):
                    titles.add(line[2:].strip())
                    break
    return LawNames(titles)


def canonical_law(name: str, names: LawNames) -> str:
    """The short name of the LawRefBook law `name` stands for; the name itself (short) when none does.

    Judicial interpretations name laws without the prefix inside their titles (关于适用《民法典》…), where
    LawRefBook writes 《中华人民共和国民法典》: both spellings are tried.
    """
    full = names.resolve(name) or names.resolve(re.sub(r"《(?!中华人民共和国)", "《" + PRC_PREFIX, name))
    return short_name(full or name)


def parse_reference(text: str, names: LawNames) -> dict | None:
    """{"law", "article", "sub"} of "《民法典》第N条…" / "中华人民共和国民法典第N条", or None."""
    match = NAMED_ARTICLE_RE.match(text.strip())
    if not match:
        return None
    sub = to_int(match["sub"]) if match["sub"] else 0
    return {"law": canonical_law(match["law"], names), "article": to_int(match["num"]), "sub": sub}


def unique(gold: list[dict]) -> list[dict]:
    return list({(g["law"], g["article"], g["sub"]): g for g in gold}.values())


# ---- the sets

def consult_dev(path: Path, names: LawNames) -> list[dict]:
    """The dev + test questions of `lawtune prepare PATH` (default policy): prepare itself decides."""
    splits = prepared_splits(path)
    out = []
    for n, record in enumerate(json.loads(path.read_text(encoding="utf-8")), 1):
        split = splits.get(key_hash(record["query"]))
        if split not in ("dev", "test"):
            continue
        gold = unique([g for law in record["laws"] if (g := parse_reference(law, names))])
        out.append({"id": f"consult_dev:{n}", "question": record["query"].strip(), "gold": gold,
                    "source": f"lawyer_llama/{path.name} element {n} (prepare split {split})",
                    "reference": "\n".join(record["laws"])})
    return out


def prepared_splits(path: Path) -> dict[int, str]:
    """Normalized-question hash → the split `lawtune prepare PATH` (default seed and ratios) puts it in."""
    splits = {}
    with tempfile.TemporaryDirectory() as folder:
        prepare([path], Path(folder))
        for split in ("train", "dev", "test"):
            for line in (Path(folder) / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
                turns = json.loads(line)["conversations"]
                splits[key_hash(next(t["content"] for t in turns if t["role"] == "user"))] = split
    return splits


def consult_multi(folder: Path, names: LawNames) -> list[dict]:
    path = folder / "legal_counsel_multi_turn_with_article_v2.json"
    splits = prepared_splits(folder / "legal_counsel_with_article_v2.json")
    out, dropped = [], 0
    for n, record in enumerate(json.loads(path.read_text(encoding="utf-8")), 1):
        question = record["query"].strip()
        if splits.get(key_hash(question)) == "train":
            dropped += 1
            continue
        gold = unique([g for law in record["laws"] if (g := parse_reference(law, names))])
        out.append({"id": f"consult_multi:{n}", "question": question, "gold": gold,
                    "source": f"lawyer_llama/{path.name} element {n} (first user question)",
                    "reference": "\n".join(record["laws"])})
    print(f"consult_multi: {dropped} questions dropped (also in the train split of legal_counsel_with_article_v2)")
    return out


def fakao_cases(path: Path, names: LawNames) -> list[dict]:
    """The case questions (type qingjing) whose answer cites an article → every article it cites."""
    out = []
    for n, record in enumerate(json.loads(path.read_text(encoding="utf-8")), 1):
        if record.get("type") != "qingjing":
            continue
        gold = unique([{"law": short_name(c.law_full or c.name), "article": c.article, "sub": c.sub}
                       for c in find_citations(record["output"], names) if c.article])
        if gold:
            out.append({"id": f"fakao_cases:{n}", "question": record["input"].strip(), "gold": gold,
                        "source": f"lawyer_llama/{path.name} element {n} (qingjing)", "reference": record["output"]})
    return out


def lawbench_31(path: Path) -> list[dict]:
    out = []
    for n, record in enumerate(json.loads(path.read_text(encoding="utf-8")), 1):
        match = LAWBENCH_31_RE.search(record["answer"])
        if not match:
            raise SystemExit(f"{path}: element {n}: answer {record['answer']!r} is not 法条:刑法第N、M条")
        gold = [{"law": "刑法", "article": int(a), "sub": 0} for a in match[1].split("、") if a]
        question = record["question"].removeprefix("事实:").replace("\r\n", "\n").strip()
        out.append({"id": f"lawbench_3-1:{n}", "question": question, "gold": unique(gold),
                    "source": f"lawbench/zero_shot/3-1.json element {n} (CAIL2018)"})
    return out


def lawbench_32(path: Path, names: LawNames) -> list[dict]:
    """kb_retrieval.py's reading: the first citation of the answer that names a law and an article."""
    out = []
    for n, record in enumerate(json.loads(path.read_text(encoding="utf-8")), 1):
        cited = [c for c in find_citations(gold_text(record["answer"]), names) if c.article and c.law_full][:1]
        gold = [{"law": short_name(c.law_full), "article": c.article, "sub": c.sub} for c in cited]
        out.append({"id": f"lawbench_3-2:{n}", "question": question_text(record), "gold": gold,
                    "source": f"lawbench/zero_shot/3-2.json element {n}", "reference": record["answer"]})
    return out


def lawbench_38(path: Path, names: LawNames) -> list[dict]:
    """Every article cited after the answer's 法律依据 (the whole answer when it has none)."""
    out = []
    for n, record in enumerate(json.loads(path.read_text(encoding="utf-8")), 1):
        answer = record["answer"]
        basis = answer[answer.find("法律依据"):] if "法律依据" in answer else answer
        gold = [{"law": short_name(c.law_full or c.name), "article": c.article, "sub": c.sub}
                for c in find_citations(basis, names) if c.article]
        out.append({"id": f"lawbench_3-8:{n}", "question": record["question"].strip(), "gold": unique(gold),
                    "source": f"lawbench/zero_shot/3-8.json element {n} (hualv.com)", "reference": basis})
    return out


def stard(folder: Path, names: LawNames, split: str) -> list[dict]:
    """The questions of STARD's own `split` (dev: held out; train: trained on) with their judged articles."""
    data = folder / "data" if (folder / "data" / "queries.json").exists() else folder
    records = {r["query_id"]: r for r in json.loads((data / "queries.json").read_text(encoding="utf-8"))}
    out = []
    for qid in stard_split_ids(data, split):
        record = records[qid]
        texts = record["相关法规"]
        gold = unique([g for name in record["match_name"] if (g := parse_reference(name, names))])
        if len(gold) != len(set(record["match_name"])):
            raise SystemExit(f"{data / 'queries.json'}: query {qid}: cannot read {record['match_name']}")
        note = "held out: never train or tune on it" if split == "dev" else "trained on (retriever_pairs.jsonl)"
        out.append({"id": f"stard_{split}:{qid}", "question": record["问题"].strip(), "gold": gold,
                    "source": f"STARD data/queries.json query_id {qid}, upstream {split} split ({note})",
                    "reference": "\n".join(texts.get(name, "") for name in record["match_name"])})
    return out


def stard_split_ids(data: Path, split: str) -> list[int]:
    """The query ids of STARD's data/example/{split}.query.txt (`id<TAB>question` lines), in file order."""
    path = data / "example" / f"{split}.query.txt"
    if not path.exists():
        raise SystemExit(f"{path}: missing; export STARD's data/example folder (see this script's docstring)")
    return [int(line.split("\t", 1)[0]) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- near-duplicates of held-out questions

class NearDuplicates:
    """Finds questions that are, or nearly are, one of the given held-out questions.

    Near = the sets of character bigrams (of the normalized text: no punctuation or spaces) have a Jaccard
    similarity of at least `threshold`. 0.6 catches rewordings ("…适用于网络贷款平台吗" / "…适用于网络贷款吗", 0.85)
    and swapped parties ("产品销售者" / "产品生产者", 0.68); unrelated questions on one topic score below 0.5."""

    def __init__(self, questions: list[str], threshold: float = 0.6):
        self.threshold = threshold
        self.held_out = sorted((len(b), n, b) for n, b in enumerate(map(bigrams, questions)))
        self.sizes = [size for size, _, _ in self.held_out]
        self.questions = questions

    def match(self, question: str) -> str | None:
        """The held-out question `question` nearly is (the most similar), or None."""
        mine = bigrams(question)
        # |A ∩ B| / |A ∪ B| ≥ t needs t·|A| ≤ |B| ≤ |A| / t: only those sizes can match
        low = bisect.bisect_left(self.sizes, math.ceil(self.threshold * len(mine) - 1e-9))
        high = bisect.bisect_right(self.sizes, math.floor(len(mine) / self.threshold + 1e-9))
        best, found = self.threshold, None
        for size, n, theirs in self.held_out[low:high]:
            shared = len(mine & theirs)
            if shared and shared / (len(mine) + size - shared) >= best:
                best, found = shared / (len(mine) + size - shared), self.questions[n]
        return found

    def matches(self, question: str) -> bool:
        return self.match(question) is not None


def bigrams(text: str) -> set[str]:
    key = normalize_key(text)
    return {key[i:i + 2] for i in range(len(key) - 1)} or {key}


if __name__ == "__main__":
    main()
