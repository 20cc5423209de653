"""Which article of a law's current version is the same provision as an article of an older version.

    links = link_versions(rows)     # rows: (row id, version, current, article, sub, text) of one law's articles
    # -> {row id of an older version's article: (article, sub) in the current version, (0, 0) if it has none}
    updates = number_updates(rows_with_stored_numbers)  # -> [(article, sub, row id)] to write, changed rows only

Amendments renumber: 公司法 (2018) 第一百四十六条 (who may not be a director) is 第一百七十八条 of the 2023
version. Questions and answers written against the old text cite the old number, and the old wording can match
a question better than the new one. The stores record, for every article, its number in the current version
(`Item.current_article` / `current_sub`); search matches all versions and returns the current article
(retrieval.py), and the benchmark counts a question's cited article found when its provision is returned.

Two articles are the same provision when at least `MIN_SIMILARITY` of the shorter one's character bigrams (without
the 第X条 heading) are in the other: an amendment that adds a sentence or a paragraph keeps the old text, which
Jaccard similarity would count against it (会计法 2017 第二条 is all of 2024 第二条's second paragraph). On all of
LawRefBook, 5,196 of the 7,019 articles of older versions get a current number this way. LawBench 3-2 recall@5
of the cited provision (benchmarks/kb_retrieval.py): Jaccard ≥ 0.5: 0.737 / 0.754 (current / all versions),
shared share of the shorter ≥ 0.7: 0.743 / 0.756 (0.741 / 0.756 since every candidate is scored).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

MIN_SIMILARITY = 0.7
HEADING_RE = re.compile(r"^\s*第[一二三四五六七八九十百千零〇两\d]+条(之[一二三四五六七八九十\d]+)?\s*")


def provision_bigrams(text: str) -> frozenset[str]:
    """The character bigrams of an article's Chinese text, without its 第X条 heading."""
    chars = "".join(ch for ch in HEADING_RE.sub("", text) if "\u4e00" <= ch <= "\u9fff")
    return frozenset(chars[i:i + 2] for i in range(len(chars) - 1))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Shared bigrams over the smaller article's bigrams: an amendment that adds a sentence keeps the old text."""
    return len(a & b) / min(len(a), len(b)) if a and b else 0.0


def number_updates(rows: Iterable[tuple[int, str, bool, int, int, str, int, int]]) -> list[tuple[int, int, int]]:
    """(article, sub, row id) for each row whose stored current number (the last two fields of a row: its
    `current_article`, `current_sub`) is not what `link_versions` gives: what a store must UPDATE for one law."""
    rows = list(rows)
    links = link_versions(row[:6] for row in rows)
    wanted = {row[0]: links.get(row[0], (row[3], row[4])) for row in rows}  # a current row: its own number
    return [(*wanted[row[0]], row[0]) for row in rows if (row[6], row[7]) != wanted[row[0]]]


def link_versions(rows: Iterable[tuple[int, str, bool, int, int, str]]) -> dict[int, tuple[int, int]]:
    """Row id of an older version's article → (article, sub) of the same provision in the current version, or
    (0, 0) when there is none. Current rows are left out: their number is their own (the stores set it in SQL).
    A law with no current version (repealed) maps every row to (0, 0).
    An older article is compared first with the current article of the same number (most are unchanged), then,
    through an index of the current version's bigrams, with every current article sharing a bigram with it.
    """
    rows = list(rows)
    current = [(article, sub, provision_bigrams(text)) for _, _, is_current, article, sub, text in rows if is_current]
    by_number = {(article, sub): grams for article, sub, grams in current}
    postings: dict[str, list[int]] = {}
    for n, (_, _, grams) in enumerate(current):
        for gram in grams:
            postings.setdefault(gram, []).append(n)
    links: dict[int, tuple[int, int]] = {}
    for row_id, _, is_current, article, sub, text in rows:
        if is_current:
            continue
        grams = provision_bigrams(text)
        same_number = by_number.get((article, sub))
        if same_number is not None and similarity(grams, same_number) >= MIN_SIMILARITY:
            links[row_id] = (article, sub)
            continue
        shared = Counter(n for gram in grams for n in postings.get(gram, ()))
        # every article sharing a bigram is scored (a top-few cut by shared count depends on the order of equal
        # counts, which set iteration makes vary between processes); ties go to the earlier current article
        best, best_score = None, MIN_SIMILARITY
        for n, common in sorted(shared.items()):
            score = common / min(len(grams), len(current[n][2]))
            if score > best_score or (score == best_score and best is None):
                best, best_score = n, score
        links[row_id] = (current[best][0], current[best][1]) if best is not None else (0, 0)
    return links
