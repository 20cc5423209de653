"""Build the fixed benchmark samples bundled in data/benchmarks/ from the raw copies in ../shared.

    .venv/bin/python benchmarks/eval_build_samples.py [--raw /work/shared/data/raw]

Run once by a maintainer; the outputs are committed. Deterministic (fixed seed), so re-running it
reproduces the same files byte for byte. Writes:
- jecqa_single.jsonl      200 single-answer JEC-QA questions (none also in LawBench 1-2)
- lawbench_1-2.jsonl      200 LawBench 1-2 (知识问答) questions, options parsed out of the question text
- lawbench_3-8.jsonl      100 LawBench 3-8 (咨询) questions as `conversations` JSONL, for `lawtune eval`
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "benchmarks"
SEED = 20261127


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def lawbench_mcq(raw: Path) -> list[dict]:
    items = json.loads((raw / "lawbench/zero_shot/1-2.json").read_text(encoding="utf-8"))
    rows = []
    for number, item in enumerate(items):
        # "题干?A:…;B:…;C:…;D:…。" → stem + four options; the answer reads "正确答案：B。"
        match = re.match(r"(?s)(.*?)A[:：](.*?);B[:：](.*?);C[:：](.*?);D[:：](.*)$", item["question"])
        answer = re.search(r"[ABCD]", item["answer"])
        if not match or not answer:
            continue
        stem, *options = (part.strip() for part in match.groups())
        options[-1] = options[-1].rstrip("。")
        if not all(options):
            continue
        rows.append({"id": f"lawbench-1-2-{number}", "question": stem,
                     "options": dict(zip("ABCD", options)), "answer": answer.group()})
    return rows


def jecqa_mcq(raw: Path, exclude_stems: set[str]) -> list[dict]:
    rows = []
    for line in (raw / "jecqa_kd/0_train.json").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if len(item["answer"]) != 1 or item["statement"].strip() in exclude_stems:
            continue
        options = {k: v.strip() for k, v in sorted(item["option_list"].items())}
        if not all(options.values()):
            continue
        rows.append({"id": f"jecqa-{item['id']}", "question": item["statement"].strip(),
                     "options": options, "answer": item["answer"][0], "subject": item.get("subject")})
    return rows


def lawbench_consult(raw: Path) -> list[dict]:
    items = json.loads((raw / "lawbench/zero_shot/3-8.json").read_text(encoding="utf-8"))
    return [{"conversations": [{"role": "user", "content": item["instruction"] + item["question"]},
                               {"role": "assistant", "content": item["answer"]}],
             "meta": {"id": f"lawbench-3-8-{number}"}} for number, item in enumerate(items)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=Path("/work/shared/data/raw"))
    args = parser.parse_args()
    lawbench = lawbench_mcq(args.raw)
    jecqa = jecqa_mcq(args.raw, {row["question"] for row in lawbench})
    consult = lawbench_consult(args.raw)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows, size in (("jecqa_single.jsonl", jecqa, 200), ("lawbench_1-2.jsonl", lawbench, 200),
                             ("lawbench_3-8.jsonl", consult, 100)):
        sample = random.Random(SEED).sample(rows, size)
        _write_jsonl(OUT / name, sample)
        print(f"{name}: {size} of {len(rows)} usable items")


if __name__ == "__main__":
    main()
