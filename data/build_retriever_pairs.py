"""Write src/lawtune/kb/retriever_pairs.jsonl: real questions with the articles their answers cite.

    .venv/bin/python data/build_retriever_pairs.py            # reads ../shared/data/raw/lawyer_llama

The dense retriever that `kb build` trains (src/lawtune/kb/dense.py) learns a layperson's words from these.
Deterministic; see src/lawtune/kb/retriever_pairs.SOURCE.md for what each source is and its licence.

Kept apart on purpose: the dev and test questions of `legal_counsel_with_article_v2.json` (as `lawtune prepare`
splits that file with its default seed and ratios: benchmarks/retrieval_sets.py reports them as `consult_dev`,
and the RAG evaluation answers its test split), every LawBench question and everything of STARD.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT.parent / "shared" / "data" / "raw" / "lawyer_llama"
OUT = ROOT / "src" / "lawtune" / "kb" / "retriever_pairs.jsonl"
sys.path.insert(0, str(ROOT / "src"))

from lawtune.data.cleaning import key_hash  # noqa: E402
from lawtune.data.prepare import run as prepare  # noqa: E402

CITE_RE = re.compile(r"《[^》]{1,40}》第[一二三四五六七八九十百千零〇0-9]+条(?:之[一二三四五六七八九十])?")
MAX_CITES = 4


def records(name: str) -> list[dict]:
    data = json.loads((RAW / f"{name}.json").read_text(encoding="utf-8"))
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
    pairs = []
    for record in records("zixun_gpt4"):
        pairs.append(("zixun_gpt4", record["query"], cites(" ".join(record["laws"]))))
    train = train_questions(RAW / "legal_counsel_with_article_v2.json")
    for record in records("legal_counsel_with_article_v2"):
        if key_hash(record["query"]) in train:
            pairs.append(("legal_counsel_with_article_v2 (prepare's train split)", record["query"],
                          cites(" ".join(record["laws"]))))
    for record in records("fakao_gpt4"):
        pairs.append(("fakao_gpt4", record["input"], cites(record["output"])))
    for record in records("judical_examination"):
        question = record["instruction"].split("\n请给出")[0].strip()
        pairs.append(("judical_examination", question, cites(record["output"].replace("第X条", ""))))
    lines = [json.dumps({"question": q.strip(), "cites": c, "source": s}, ensure_ascii=False)
             for s, q, c in pairs if c and q.strip()]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(lines)} questions")


if __name__ == "__main__":
    main()
