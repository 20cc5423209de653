"""`lawtune kb check`: run the citation check over a file of answers.

    from lawtune.kb.check import check_file
    summary, rows = check_file("kb.sqlite", "runs/demo/eval/predictions.jsonl")
    print(summary.to_json())          # counts per verdict, citation precision, nonexistent rate
    rows[0]                           # {"line": 1, "citations": [{...verdict...}, ...]}

Input: a JSONL file whose objects hold the answer in `field` (default `prediction`, as `lawtune eval` writes
its predictions.jsonl), or any other file read as plain text, one answer per non-empty line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from lawtune.errors import LawtuneError
from lawtune.kb.citations import CheckSummary, CitationChecker


def read_answers(path: str | Path, field: str = "prediction") -> Iterator[tuple[int, str]]:
    """(line number, answer text) for each answer in the file; LawtuneError names file:line of a bad line."""
    path = Path(path)
    if not path.is_file():
        raise LawtuneError(f"{path}: no such file; give the predictions.jsonl of `lawtune eval` or a text file")
    as_json = path.suffix == ".jsonl"
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                if not as_json:
                    yield line_no, line.rstrip("\n")
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise LawtuneError(f"{path}:{line_no}: not valid JSON ({error.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get(field), str):
                    raise LawtuneError(f"{path}:{line_no}: no string field {field!r} "
                                       f"(pick the answer field with --field)")
                yield line_no, record[field]
    except UnicodeDecodeError as error:
        raise LawtuneError(f"{path}: not UTF-8 text ({error.reason}); write it as UTF-8") from None


def check_file(kb: str | Path, path: str | Path, field: str = "prediction") -> tuple[CheckSummary, list[dict]]:
    from lawtune.kb import open_store

    with open_store(kb) as store:
        checker = CitationChecker(store.catalog())
    summary = CheckSummary()
    rows = []
    for line_no, answer in read_answers(path, field):
        verdicts = checker.check(answer)
        summary.add(verdicts)
        rows.append({"line": line_no, "citations": [v.to_json() for v in verdicts]})
    if summary.answers == 0:
        raise LawtuneError(f"{path}: no answers in the file")
    return summary, rows
