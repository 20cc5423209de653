"""A retrieval set's real questions as an eval file: the whole answer on real questions, scored by its citations.

    python benchmarks/retrieval_sets.py --stard STARD -o SETS          # the sets (stard_dev: held out)
    python benchmarks/answer_sets.py --sets SETS --set stard_dev --limit 60 -o out/answers/stard_dev60.jsonl
    lawtune eval RUN --data out/answers/stard_dev60.jsonl --kb all.sqlite --no-mcq --max-new-tokens 128

Each line is `{"conversations": [question, reference], "meta": {"id"}}` where the reference is only the gold
articles as citations (「《民法典》第469条；《民法典》第470条」): the set has no answer text, so ROUGE and eval loss
mean nothing here, while the grounding metrics do — `reference_agreement_pct` is the share of answers citing a
relevant article, `reference_retrieved_pct` the share whose prompt held one, `retrieved_fit_pct` the share of the
retrieved articles an answer cites that are relevant (docs/evaluation.md). The first `--limit` questions in the
set's order (no choice made here).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def citation(gold: dict) -> str:
    sub = f"之{gold['sub']}" if gold.get("sub") else ""
    return f"《{gold['law']}》第{gold['article']}条{sub}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=Path, required=True, help="benchmarks/retrieval_sets.py's output folder")
    parser.add_argument("--set", default="stard_dev")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    source = args.sets / f"{args.set}.jsonl"
    if not source.is_file():
        raise SystemExit(f"{source}: no such set (write the sets with benchmarks/retrieval_sets.py)")
    lines = []
    for line in source.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if not record.get("gold"):
            continue
        reference = "；".join(citation(g) for g in record["gold"])
        lines.append(json.dumps({"conversations": [{"role": "user", "content": record["question"]},
                                                   {"role": "assistant", "content": reference}],
                                 "meta": {"id": record["id"]}}, ensure_ascii=False))
        if len(lines) == args.limit:
            break
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(lines)} questions of {args.set}")


if __name__ == "__main__":
    main()
