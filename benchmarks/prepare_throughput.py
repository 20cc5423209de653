"""Throughput and peak memory of `lawtune prepare` on a generated 1,000,000-row CSV.

Run from the repository root:  .venv/bin/python benchmarks/prepare_throughput.py [--rows 1000000]

Builds a CSV in the seed schema (title,question,reply,is_best) in a temporary folder from the bundled
sample's texts, each row made unique with a number, plus the mess real dumps have: ~2% exact duplicates,
~1% HTML, ~0.5% broken rows, mixed is_best. Each measurement runs in a fresh subprocess that reports its
own peak RSS, so runs do not share memory:
  - reference: the tutorial's conversion (csv.reader, title -> user, reply -> assistant, one JSONL file);
  - prepare on 1/10 of the rows and on all of them, with and without --dedupe.
Memory is flat when peak RSS does not grow with the input, except for --dedupe's set of 64-bit hashes
(one per kept row). Speeds are printed as ratios to the reference because the machine is shared.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "legal_qa_sample.csv"

CHILD_PREPARE = """
import json, resource, sys, time
from pathlib import Path
from lawtune.data.prepare import run
start = time.perf_counter()
report = run([Path(sys.argv[1])], Path(sys.argv[2]), dedupe=sys.argv[3] == "1")
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rows": report["rows_read"], "kept": report["kept"],
                  "dropped": report["dropped"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# The tutorial's script, reduced to its loop: no cleaning, no dedupe, no split, no error accounting.
CHILD_REFERENCE = """
import csv, json, resource, sys, time
start = time.perf_counter()
rows = 0
with open(sys.argv[1], encoding="utf-8", newline="") as src, open(sys.argv[2], "w", encoding="utf-8") as dst:
    for record in csv.DictReader(src):
        rows += 1
        dst.write(json.dumps({"conversations": [{"role": "user", "content": record["title"] or ""},
                                                {"role": "assistant", "content": record["reply"] or ""}]},
                             ensure_ascii=False) + "\\n")
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows, "kept": rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """A seed-schema CSV of `rows` records built from the sample's questions and (shortened) answers."""
    rng = random.Random(seed)
    with open(SAMPLE, encoding="utf-8", newline="") as handle:
        pool = [(r["title"], r["reply"][:160]) for r in csv.DictReader(handle)]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["title", "question", "reply", "is_best"])
        previous = None
        for i in range(rows):
            roll = rng.random()
            if roll < 0.02 and previous:
                writer.writerow(previous)  # exact duplicate
                continue
            if roll < 0.025:
                handle.write(f'"broken quote {i}"x,,y,1\n')  # bad_quoting
                continue
            title, reply = pool[i % len(pool)]
            title = f"{title}（编号{i}）"
            if roll < 0.035:
                title = f"<p>{title}&nbsp;</p>"
            body = "补充说明：对方一直不回复。" if roll < 0.3 else ""
            previous = [title, body, reply, 1 if roll < 0.7 else 0]
            writer.writerow(previous)


def measure(code: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="prepare throughput and peak memory")
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    small = max(1000, args.rows // 10)
    with tempfile.TemporaryDirectory(prefix="lawtune-bench-") as folder:
        folder = Path(folder)
        started = time.perf_counter()
        generate(folder / "big.csv", args.rows)
        generate(folder / "small.csv", small)
        size_mb = (folder / "big.csv").stat().st_size / 2**20
        print(f"generated {args.rows:,} rows ({size_mb:,.0f} MiB) + {small:,} rows in {time.perf_counter() - started:.0f} s")

        runs = [
            ("reference (tutorial loop)", measure(CHILD_REFERENCE, str(folder / "big.csv"), str(folder / "ref.jsonl"))),
            (f"prepare {small:,} rows", measure(CHILD_PREPARE, str(folder / "small.csv"), str(folder / "o1"), "1")),
            (f"prepare {args.rows:,} rows", measure(CHILD_PREPARE, str(folder / "big.csv"), str(folder / "o2"), "1")),
            (f"prepare {args.rows:,} rows --no-dedupe", measure(CHILD_PREPARE, str(folder / "big.csv"), str(folder / "o3"), "0")),
        ]
    reference = runs[0][1]["rows"] / runs[0][1]["seconds"]
    print(f"{'run':<36}{'rows/s':>10}{'x ref':>8}{'peak RSS MiB':>14}{'kept':>11}")
    for name, r in runs:
        speed = r["rows"] / r["seconds"]
        print(f"{name:<36}{speed:>10,.0f}{speed / reference:>8.2f}{r['peak_rss_mb']:>14,.0f}{r['kept']:>11,}")
    print("dropped (1M, dedupe):", runs[2][1]["dropped"])


if __name__ == "__main__":
    main()
