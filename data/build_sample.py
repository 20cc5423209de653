"""Rebuild `data/legal_qa_sample.csv` from the Lawyer LLaMA legal-advice data in ../shared.

Run from the repository root:  .venv/bin/python data/build_sample.py [--rows 3000] [--raw DIR]

Mapping into the seed CSV schema `title,question,reply,is_best` (see data/SOURCE.md for why):
title = the consultation question (`instruction`), question = the extra `input` (empty in this file),
reply = the answer (`output`, kept as-is), is_best = 1 (every item has exactly one answer).
The first N items are taken in file order, so the sample is the same on every rebuild.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_RAW = HERE.parent.parent / "shared" / "data" / "raw" / "lawyer_llama"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--raw", type=Path, default=DEFAULT_RAW, help="folder holding legal_advice.json")
    parser.add_argument("--out", type=Path, default=HERE / "legal_qa_sample.csv")
    args = parser.parse_args()

    # legal_advice.json is a JSON array whose elements are one-element lists: [{"input","instruction","output"}]
    items = json.loads((args.raw / "legal_advice.json").read_text(encoding="utf-8"))
    with open(args.out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["title", "question", "reply", "is_best"])
        for wrapped in items[: args.rows]:
            item = wrapped[0] if isinstance(wrapped, list) else wrapped
            writer.writerow([item["instruction"], item.get("input", ""), item["output"], 1])
    print(f"wrote {min(args.rows, len(items))} rows to {args.out}")


if __name__ == "__main__":
    main()
