"""Cite what the answer used: an answer that repeats a retrieved article's words gets that article's number.

    from lawtune.kb.attribution import attribute
    attributed = attribute(answer, hits, max_chars=200)   # Attribution(answer, quoted, added)
    attributed.line     # 「依据：《民法典》第一千零八十五条」 naming the repeated articles it did not cite ("" if none)
    attributed.text     # the answer, then that line
    attributed.quoted   # the hits whose words the answer repeats, in the order the answer uses them

A small model given articles under `--kb` often paraphrases one closely ("离婚后，子女由一方直接抚养的，另一方应当
负担部分或者全部抚养费") but names only the law (「根据《民法典》的规定」): the reader cannot check it, and the
grounding metrics cannot credit it. Attribution looks for the retrieved articles the answer actually repeats —
a run of at least `MIN_QUOTED_CHARS` characters in common with the excerpt the model was shown (punctuation and
spaces ignored) — and names in a last line each one the answer does not already cite by number and retrieval
ranked close to the best (`MIN_SCORE_RATIO`). An article the answer does not repeat is never named, and neither is
a low-ranked one it repeats (those fit the question less often); an answer that says the material does not fit
(`kb.wording.says_no_fit`, what RAG training teaches) is left as it is.

Deterministic, no model: `eval` / `compare` / `infer` / `chat` apply it to every `--kb` answer (`--no-attribute`
keeps the model's text), `serve --kb` lists the quoted references in the response's `lawtune.quoted`. Both
thresholds were chosen on the demo's article-cited dev split (docs/knowledge-base.md, "Citing what the answer used").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from lawtune.kb.citations import find_citations
from lawtune.kb.names import LawNames
from lawtune.kb.store import Hit
from lawtune.kb.wording import says_no_fit
from lawtune.text import excerpt

MIN_QUOTED_CHARS = 10  # common run (punctuation and spaces ignored) that counts as repeating an article
# a quoted article is named only when retrieval ranked it close to the best (its score ≥ this × the best score, or
# the question named it): the model repeats retrieved articles whether they fit or not, and the low-ranked ones it
# repeats fit less often (the demo's dev split: 1 in 9 below 0.8 × the best, 25 in 41 above)
MIN_SCORE_RATIO = 0.9
LEAD = "依据："
_IGNORED = re.compile(r"[\s，。、；：！？,.;:!?“”\"'（）()《》【】\[\]…—-]+")


@dataclass
class Attribution:
    answer: str  # the model's answer
    quoted: list[Hit] = field(default_factory=list)  # retrieved articles the answer repeats, first used first
    added: list[Hit] = field(default_factory=list)  # of those, the ones the last line names

    @property
    def line(self) -> str:
        """「依据：《民法典》第一千零八十五条」 naming `added`; "" when there is none."""
        return LEAD + "、".join(h.item.cite() for h in self.added) if self.added else ""

    @property
    def text(self) -> str:
        """The answer a reader sees: the model's, then the line after a blank line (unchanged without one)."""
        return f"{self.answer.rstrip()}\n\n{self.line}" if self.added else self.answer


def _bare(text: str) -> str:
    return _IGNORED.sub("", text)


def quoted_run(answer: str, article_text: str) -> tuple[int, int]:
    """(length, position in the bare answer) of the longest run the answer shares with the article, punctuation
    and spaces ignored."""
    a, b = _bare(answer), _bare(article_text)
    if not a or not b:
        return 0, 0
    match = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return match.size, match.a


def attribute(answer: str, hits: list[Hit], max_chars: int | None = None, min_chars: int = MIN_QUOTED_CHARS,
              min_ratio: float | None = None) -> Attribution:
    """The answer with the retrieved articles it repeats named (module docstring). `max_chars`: the excerpt length
    the prompt showed (None: the whole article); `min_ratio`: MIN_SCORE_RATIO unless given."""
    articles = [h for h in hits if h.item.kind == "article"]
    if not answer.strip() or not articles or says_no_fit(answer):
        return Attribution(answer)
    runs = []
    for order, hit in enumerate(articles):
        shown = hit.item.text if max_chars is None else excerpt(hit.item.text, max_chars)
        length, position = quoted_run(answer, shown)
        if length >= min_chars:
            runs.append((position, order, hit))
    quoted = [hit for _, _, hit in sorted(runs, key=lambda run: run[:2])]
    if not quoted:
        return Attribution(answer)
    names = LawNames(sorted({h.item.law_full for h in quoted}))
    cited = {(c.law_full, c.article, c.sub) for c in find_citations(answer, names) if c.article is not None}
    ratio = MIN_SCORE_RATIO if min_ratio is None else min_ratio
    best = max(h.score for h in articles)
    added = [h for h in quoted if (h.item.law_full, h.item.article, h.item.sub) not in cited
             and (h.exact or best <= 0 or h.score >= ratio * best)]
    return Attribution(answer, quoted, added)
