"""`lawtune prepare`: legal Q&A sources -> train/dev/test conversations JSONL + report.json.

    from lawtune.data.prepare import run
    report = run([Path("data/legal_qa_sample.csv")], Path("out"), is_best="best-per-title", seed=1)

Reads each source as a stream (CSV, alpaca, query/response, sharegpt, conversations), cleans and filters
every record, drops repeats, and places each one by the hash of its normalized question. Memory holds one
64-bit hash per kept row (for --dedupe) and nothing per row otherwise. Every output file is complete or
absent: splits are written in a temporary folder inside OUT_DIR and renamed into place; report.json is
written last, so its presence means the run finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import lawtune
from lawtune.data.cleaning import key_hash
from lawtune.data.csv_source import read_csv_source
from lawtune.data.detect import detect_encoding, detect_format, open_text
from lawtune.data.json_source import read_json_source
from lawtune.data.policy import PreparePolicy, parse_policy
from lawtune.data.records import Drop, Kept
from lawtune.data.report import Tally
from lawtune.data.split import SPLITS, assign, bucket, rank_assign
from lawtune.errors import LawtuneError
from lawtune.fsutil import atomic_write_json, sha256_file

PROGRESS_EVERY = 5000


def run(sources: list[Path], out_dir: Path, *, progress: bool = False, **options: Any) -> dict[str, Any]:
    """Prepare `sources` into `out_dir`; returns the report (also written to out_dir/report.json)."""
    policy = parse_policy(options)
    plan = _plan([Path(source) for source in sources], policy)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LawtuneError(f"{out_dir}: exists and is not a folder; give -o a folder for train/dev/test.jsonl")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".prepare-", suffix=".tmp", dir=out_dir))
    started = time.perf_counter()
    try:
        tally = Tally()
        with _Splits(work) as splits:
            for path, encoding, fmt in plan:
                _consume(_read(path, encoding, fmt, policy), str(path), policy, tally, splits, progress)
        if min(splits.counts.values()) == 0:
            try:
                splits.rebalance(policy)
            except LawtuneError as error:
                dropped = ", ".join(f"{reason} {count}" for reason, count in tally.dropped.most_common()) or "none"
                raise LawtuneError(f"{error}. Read {tally.read} rows, kept {tally.kept}, dropped: {dropped}") from None
        report = _report(plan, policy, tally, splits.counts, out_dir, time.perf_counter() - started)
        (out_dir / "report.json").unlink(missing_ok=True)  # no stale report beside new splits
        for name in SPLITS:
            os.replace(work / f"{name}.jsonl", out_dir / f"{name}.jsonl")
        atomic_write_json(out_dir / "report.json", report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _plan(sources: list[Path], policy: PreparePolicy) -> list[tuple[Path, str, str]]:
    """(path, encoding, format) per source, all checked before any work starts."""
    if not sources:
        raise LawtuneError("no source files given; example: lawtune prepare data/legal_qa_sample.csv -o out")
    plan = []
    for path in sources:
        if not path.is_file():
            raise LawtuneError(f"{path}: no such file; give CSV / JSON / JSONL files of legal Q&A")
        encoding = policy.encoding or detect_encoding(path)
        try:
            "".encode(encoding)
        except LookupError:
            raise LawtuneError(f"unknown encoding {encoding!r}; use e.g. utf-8, utf-8-sig or gb18030") from None
        fmt = policy.format if policy.format != "auto" else detect_format(path, encoding)
        plan.append((path, encoding, fmt))
    return plan


def _read(path: Path, encoding: str, fmt: str, policy: PreparePolicy) -> Iterator[Kept | Drop]:
    if fmt == "csv":
        return read_csv_source(path, lambda: open_text(path, encoding), policy)
    return _read_json(path, encoding, fmt, policy)


def _read_json(path: Path, encoding: str, fmt: str, policy: PreparePolicy) -> Iterator[Kept | Drop]:
    with open_text(path, encoding) as handle:
        yield from read_json_source(path, handle, fmt, policy)


def _consume(items: Iterator[Kept | Drop], source: str, policy: PreparePolicy, tally: Tally,
             splits: "_Splits", progress: bool) -> None:
    """Filter, dedupe and place every record of one source."""
    seen = splits.seen
    with _progress(source, progress) as advance:
        for index, item in enumerate(items, 1):
            if index % PROGRESS_EVERY == 0:
                advance(PROGRESS_EVERY)
            if isinstance(item, Drop):
                tally.drop(item.reason, source, item.line)
                continue
            example = item.example
            reason = _length_problem(example.messages, policy)
            if reason is None and policy.dedupe:
                digest = key_hash(*(t["content"] + (json.dumps(t["tool_calls"], ensure_ascii=False)
                                                    if t.get("tool_calls") else "")
                                    for t in example.messages if t["role"] != "system"))
                reason = "duplicate" if digest in seen else None
                seen.add(digest)
            if reason is None:
                try:
                    line = json.dumps(example.record(), ensure_ascii=False).encode()
                except UnicodeEncodeError:  # a lone surrogate hidden in passed-through metadata
                    reason = "bad_encoding"
            if reason is not None:
                tally.drop(reason, source, example.line)
                continue
            value = bucket(item.split_key, policy.seed)
            splits.write(assign(value, policy.dev_ratio, policy.test_ratio), line, value)
            tally.keep(source, example.messages, example.line)


def _length_problem(messages: list[dict[str, str]], policy: PreparePolicy) -> str | None:
    for turn in messages:
        if turn["role"] in ("system", "tool") or turn.get("tool_calls"):  # data and calls, not prose
            continue
        if len(turn["content"]) < policy.min_chars:
            return "too_short"
        if policy.max_chars and len(turn["content"]) > policy.max_chars:
            return "too_long"
    return None


class _Splits:
    """Three JSONL files plus, beside each, the 8-byte split hash of every line (for `rebalance`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counts = dict.fromkeys(SPLITS, 0)
        self.seen: set[int] = set()
        self.files: dict[str, tuple[BinaryIO, BinaryIO]] = {}

    def __enter__(self) -> "_Splits":
        for name in SPLITS:
            self.files[name] = (open(self.folder / f"{name}.jsonl", "wb"), open(self.folder / f"{name}.keys", "wb"))
        return self

    def __exit__(self, *exc: object) -> None:
        for data, keys in self.files.values():
            data.flush()
            os.fsync(data.fileno())
            data.close()
            keys.close()
        self.seen.clear()

    def write(self, split: str, line: bytes, value: int) -> None:
        data, keys = self.files[split]
        data.write(line + b"\n")
        keys.write(value.to_bytes(8, "big"))
        self.counts[split] += 1

    def rebalance(self, policy: PreparePolicy) -> None:
        """Re-place every line by rank of its question hash, so no split is empty (small inputs)."""
        values = set()
        for name in SPLITS:
            keys = (self.folder / f"{name}.keys").read_bytes()
            values.update(int.from_bytes(keys[i:i + 8], "big") for i in range(0, len(keys), 8))
        placed = rank_assign(values, policy.dev_ratio, policy.test_ratio)
        self.counts = dict.fromkeys(SPLITS, 0)
        outputs = {name: open(self.folder / f"{name}.new", "wb") for name in SPLITS}
        for name in SPLITS:
            with open(self.folder / f"{name}.jsonl", "rb") as data, open(self.folder / f"{name}.keys", "rb") as keys:
                for line in data:
                    target = placed[int.from_bytes(keys.read(8), "big")]
                    outputs[target].write(line)
                    self.counts[target] += 1
        for name, handle in outputs.items():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(self.folder / f"{name}.new", self.folder / f"{name}.jsonl")


def _report(plan: list[tuple[Path, str, str]], policy: PreparePolicy, tally: Tally, counts: dict[str, int],
            out_dir: Path, seconds: float) -> dict[str, Any]:
    summary = tally.summary()
    return {
        "lawtune_version": lawtune.__version__,
        "out_dir": str(out_dir),
        "sources": [
            {"path": str(path), "format": fmt, "encoding": encoding, "sha256": sha256_file(path),
             "rows_read": tally.per_source[str(path)]["read"], "kept": tally.per_source[str(path)]["kept"]}
            for path, encoding, fmt in plan
        ],
        "policy": policy.model_dump(),
        **summary,
        "splits": counts,
        "split_by": "blake2b-64 of the normalized question (CSV: the title) salted with the seed",
        "seconds": round(seconds, 2),
    }


class _progress:
    """A rich spinner with a row counter on stderr when asked for; a no-op otherwise."""

    def __init__(self, source: str, enabled: bool) -> None:
        self.source, self.enabled, self.progress = source, enabled, None

    def __enter__(self):
        if not self.enabled:
            return lambda count: None
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 TextColumn("{task.completed:,} rows"), TimeElapsedColumn(), transient=True)
        self.progress.start()
        task = self.progress.add_task(f"reading {self.source}", total=None)
        return lambda count: self.progress.update(task, advance=count)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
