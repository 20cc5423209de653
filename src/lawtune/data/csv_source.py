"""Read the seed CSV schema `title,question,reply,is_best` for `lawtune prepare`, one row at a time.

    from lawtune.data.csv_source import read_csv_source
    for item in read_csv_source(path, open_text, policy): ...   # Kept or Drop per CSV record

`title` and `reply` are required columns, `question` and `is_best` optional; extra columns are ignored.
Rows with a wrong field count or broken quoting become counted drops with their starting line (undecodable
bytes, decoded with surrogateescape, are caught later by `records.finish`). `--is-best best-per-title` needs to see
all answers of a title before choosing, so it reads the file twice and keeps one small int per title.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from lawtune.data.cleaning import clean_text, key_hash, normalize_key
from lawtune.data.policy import PreparePolicy
from lawtune.data.records import Drop, Kept, finish
from lawtune.errors import LawtuneError

COLUMNS = ("title", "question", "reply", "is_best")
REQUIRED = ("title", "reply")
_TRUE = {"1", "1.0", "true", "t", "yes", "y", "是"}


def read_csv_source(path: Path, open_text: Callable[[], IO[str]], policy: PreparePolicy) -> Iterator[Kept | Drop]:
    """One Kept or Drop per CSV record, in file order (blank lines are not records)."""
    chosen = _best_per_title(path, open_text, policy) if policy.is_best == "best-per-title" else None
    with open_text() as handle:
        rows = _rows(path, handle)
        columns = _header(path, rows, policy)
        for ordinal, (line, fields) in enumerate(rows):
            if isinstance(fields, str):
                yield Drop(fields, line)
                continue
            parsed = _fields(fields, columns, policy.clean)
            if isinstance(parsed, str):
                yield Drop(parsed, line)
                continue
            title, body, reply, best = parsed
            if policy.is_best == "best" and not best:
                yield Drop("not_best", line)
            elif chosen is not None and chosen.get(key_hash(title or body)) != ordinal:
                yield Drop("not_best_for_title", line)
            else:
                user = compose_question(title, body, policy.user_text)
                key = title if title and policy.user_text != "question" else user
                messages = [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
                meta = {"source": path.name, "line": line}
                yield finish(messages, key, line, meta, clean=False, system_prompt=policy.system_prompt)


def compose_question(title: str, body: str, mode: str) -> str:
    """The user turn: the title, the body, or both ("both" skips a body that copies the title)."""
    if mode == "title" or not body:
        return title
    if mode == "question" or not title:
        return body
    title_key, body_key = normalize_key(title), normalize_key(body)
    if title_key.startswith(body_key):
        return title
    if body_key.startswith(title_key):
        return body  # the body repeats the title and adds detail
    return f"{title}\n{body}"


def _rows(path: Path, handle: IO[str]) -> Iterator[tuple[int, list[str] | str]]:
    """(starting line, fields) per CSV record, or (line, drop reason) when it cannot be parsed."""
    reader = csv.reader(handle, strict=True)
    start = 1
    while True:
        try:
            fields: list[str] | str = next(reader)
        except StopIteration:
            return
        except csv.Error:
            fields = "bad_quoting"  # the reader resets itself and goes on at the next line
        if fields != []:  # a blank line is not a record
            yield start, fields
        start = reader.line_num + 1


def _header(path: Path, rows: Iterator[tuple[int, list[str] | str]], policy: PreparePolicy) -> dict[str, int]:
    """Column name -> index; LawtuneError when the header is unreadable or lacks a required column."""
    line, fields = next(rows, (1, None))
    if fields is None:
        raise LawtuneError(f"{path}: empty file; expected a CSV with the header {','.join(COLUMNS)}")
    if isinstance(fields, str):
        raise LawtuneError(f"{path}:{line}: the CSV header cannot be read ({fields}); expected {','.join(COLUMNS)}")
    names = [name.strip().lstrip("\ufeff").lower() for name in fields]
    columns = {name: index for index, name in reversed(list(enumerate(names)))}
    columns["_count"] = len(names)
    missing = [name for name in REQUIRED if name not in columns]
    if policy.is_best != "all" and "is_best" not in columns:
        missing.append("is_best (needed by --is-best " + policy.is_best + ")")
    if missing:
        found = ",".join(fields)[:200]
        raise LawtuneError(
            f"{path}:{line}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)} "
            f"(title and reply required), found {found!r}. Fix the header, or pass --format for a non-CSV file"
        )
    return columns


def _fields(fields: list[str], columns: dict[str, int], clean: bool) -> tuple[str, str, str, bool] | str:
    """(title, body, reply, is_best) of a row, cleaned; a drop reason when the field count is wrong."""
    if len(fields) != columns["_count"]:
        return "bad_columns"
    tidy = clean_text if clean else str.strip

    def get(name: str) -> str:
        index = columns.get(name)
        return tidy(fields[index]) if index is not None else ""

    best = fields[columns["is_best"]].strip().lower() in _TRUE if "is_best" in columns else True
    return get("title"), get("question"), get("reply"), best


def _best_per_title(path: Path, open_text: Callable[[], IO[str]], policy: PreparePolicy) -> dict[int, int]:
    """title hash -> ordinal of the row to keep: the first is_best=1 answer, else the first answer."""
    chosen: dict[int, int] = {}
    chosen_is_best: set[int] = set()
    with open_text() as handle:
        rows = _rows(path, handle)
        columns = _header(path, rows, policy)
        for ordinal, (_line, fields) in enumerate(rows):
            parsed = fields if isinstance(fields, str) else _fields(fields, columns, policy.clean)
            if isinstance(parsed, str) or not parsed[2]:
                continue  # unreadable rows and empty answers are never chosen
            title, body, _reply, best = parsed
            key = key_hash(title or body)
            if key not in chosen or (best and key not in chosen_is_best):
                chosen[key] = ordinal
                if best:
                    chosen_is_best.add(key)
    return chosen
