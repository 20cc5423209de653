"""Guess a source file's text encoding and record format from its first bytes / first record.

    from lawtune.data.detect import detect_encoding, detect_format
    encoding = detect_encoding(path)              # "utf-8-sig", "utf-8", "gb18030", ...
    fmt = detect_format(path, encoding)            # "csv", "alpaca", "query_response", "sharegpt", "conversations"

Files are decoded with errors="surrogateescape", so a stray bad byte later in a file never stops a run:
the row holding it becomes a counted `bad_encoding` drop.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import IO

from lawtune.errors import LawtuneError

SAMPLE_BYTES = 1 << 20
FORMATS_HELP = ("CSV with title,question,reply,is_best; alpaca (instruction/input/output); query/response; "
                "sharegpt (conversations of from/value); conversations (role/content)")


def open_text(path: Path, encoding: str) -> IO[str]:
    """A text handle that never raises on bad bytes (they become lone surrogates, caught per row)."""
    return open(path, encoding=encoding, errors="surrogateescape", newline="")


def detect_encoding(path: Path) -> str:
    """utf-8-sig (BOM), utf-8, gb18030 when the first MiB decodes cleanly in it; else charset-normalizer's guess."""
    with open(path, "rb") as handle:
        head = handle.read(SAMPLE_BYTES)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    whole = len(head) < SAMPLE_BYTES
    for encoding in ("utf-8", "gb18030"):
        try:
            # final=False: a multi-byte character cut at the sample's end is not an error
            codecs.getincrementaldecoder(encoding)().decode(head, final=whole)
            return encoding
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(head).best()
    return best.encoding if best is not None else "utf-8"


def detect_format(path: Path, encoding: str) -> str:
    """The format of a file, from its first non-blank character and, for JSON, its first record."""
    from lawtune.data.json_source import classify, iter_json_records

    with open_text(path, encoding) as handle:
        head = handle.read(4096).lstrip()
        handle.seek(0)
        if not head:
            raise LawtuneError(f"{path}: empty file; expected {FORMATS_HELP}")
        if head[0] not in "[{":
            return "csv"
        if head[0] == "{":
            first_line = handle.readline()
            handle.seek(0)
            try:
                json.loads(first_line)
            except (json.JSONDecodeError, RecursionError):
                raise LawtuneError(
                    f"{path}:1: the first line is not a complete JSON object, so this is not JSONL; "
                    "give a JSON array of records or one JSON object per line"
                ) from None
        line, record = next(iter_json_records(path, handle), (1, None))
    if record is None:
        raise LawtuneError(f"{path}: no records found; expected {FORMATS_HELP}")
    fmt = classify(record)
    if fmt is None:
        keys = sorted(record)[:10] if isinstance(record, dict) else type(record).__name__
        raise LawtuneError(f"{path}:{line}: cannot tell the format from the first record ({keys}); expected {FORMATS_HELP}; or pass --format")
    return fmt
