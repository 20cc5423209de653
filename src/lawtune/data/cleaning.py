"""Text cleaning and normalization for `lawtune prepare`.

    from lawtune.data.cleaning import clean_text, normalize_key
    clean_text("<p>劳动合同&nbsp;到期</p>")   # -> "劳动合同 到期"
    normalize_key("离婚 怎么办？")               # -> "离婚怎么办"  (for dedupe and split hashing only)

`clean_text` changes what the model sees, so it is conservative: it decodes HTML entities, then strips HTML
tags (so its output never holds markup, escaped or not),
zero-width and control characters, and collapses whitespace runs; it never rewrites Chinese punctuation
or full-width characters. `normalize_key` is aggressive (NFKC, case-folded, no whitespace or
punctuation) because it is only used to decide which rows are "the same question".
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata

# Only things that look like real tags (a letter right after "<"), so "a < b" in text survives.
_BLOCK_TAG = re.compile(r"<\s*(?:br|/p|/div|/li|/tr|/h[1-6])\b[^<>]*>", re.IGNORECASE)
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>", re.DOTALL)
# Zero-width and formatting characters that are invisible but break dedupe and tokenization.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\ufeff\u00ad]")
# C0/C1 control characters except tab and newline (\r is handled as a newline first).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_HSPACE = re.compile("[ \t\u00a0\u3000\u2000-\u200a\u202f\u205f]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_KEY_DROP = re.compile(r"[\s\W_]+", re.UNICODE)


def clean_text(text: str) -> str:
    """HTML tags/entities, invisible characters and whitespace runs removed; paragraphs kept."""
    if "&" in text:  # first: an escaped tag (&lt;script&gt;) is removed like a tag, never turned into one
        text = html.unescape(text)
    if "<" in text:
        text = _BLOCK_TAG.sub("\n", text)
        text = _TAG.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub("", text)
    text = _HSPACE.sub(" ", text)
    if "\n" in text:
        text = "\n".join(line.strip() for line in text.split("\n"))
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def normalize_key(text: str) -> str:
    """The comparison form of a text: NFKC, case-folded, whitespace and punctuation removed."""
    # Dropping whitespace and punctuation first leaves mostly CJK and ASCII, which the cheap quick check
    # finds already NFKC-normal; the full normalization (the slowest step of prepare) then runs rarely.
    text = _KEY_DROP.sub("", text)
    if not unicodedata.is_normalized("NFKC", text):
        text = _KEY_DROP.sub("", unicodedata.normalize("NFKC", text))
    return text.casefold()


def key_hash(*parts: str) -> int:
    """A 64-bit hash of normalized texts; sets of these are all prepare keeps in memory."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(normalize_key(part).encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return int.from_bytes(digest.digest(), "big")
