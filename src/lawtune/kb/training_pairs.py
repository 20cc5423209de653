"""Question → article pairs that `kb build` trains the dense retriever on (dense.py, encoder.py).

    pairs = training_pairs(articles, names)   # [(question, [index into articles, ...]), ...]

Two kinds, both resolved against the articles the KB holds, so a KB of other laws simply uses fewer of them:
- real questions (`retriever_pairs.jsonl`, shipped; SOURCE.md beside it): consultations that members of the
  public typed (Lawyer LLaMA's, and STARD's train split with the articles a legal team judged relevant) and exam
  case questions, each with the articles its answer cites — the layperson's words;
- pairs the laws give for free: a sentence of an article → the article (the inverse cloze task), the law and
  heading → the article, and a regulation's or judicial interpretation's article → the statute articles it
  cites ("…应当认定为刑法第二百六十四条规定的…", with the citation itself cut out) — the statute's own paraphrases.
Real questions are repeated `REAL_REPEAT` times: they are few but are the kind of text users send.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from importlib import resources

from lawtune.kb.citations import find_citations
from lawtune.kb.names import LawNames
from lawtune.kb.store import Item

REAL_REPEAT = 4
LAW_SHARE = 1.0  # the share of the law-given pairs kept (a seeded sample): how much they weigh against the real ones
MIN_SENTENCE = 8  # characters: shorter pieces of an article ("（一）", "但是") say nothing about it
MAX_QUERY = 300
STATUTE_RE = re.compile(r"^中华人民共和国.*(法|法典)(（[^（）]*）)?$")
SENTENCE_RE = re.compile(r"[^。；：]+[。；]?")
CITATION_TEXT_RE = re.compile(r"《[^》]{1,40}》第[一二三四五六七八九十百千零〇0-9]+条(之[一二三四五六七八九十])?"
                              r"|[^，。；、\s《》]{1,12}法第[一二三四五六七八九十百千零〇0-9]+条")
PAIRS_FILE = "retriever_pairs.jsonl"

Pair = tuple[str, list[int]]


def training_pairs(articles: Sequence[Item], names: LawNames, seed: int = 0) -> list[Pair]:
    """Every pair for these articles (current versions), real questions repeated REAL_REPEAT times."""
    index = {(a.law_full, a.article, a.sub): n for n, a in enumerate(articles)}
    real = list(real_pairs(index, names))
    law = list(law_pairs(articles, index, names, seed))
    if LAW_SHARE < 1.0:
        law = random.Random(seed).sample(law, round(LAW_SHARE * len(law)))
    return [*law, *real * REAL_REPEAT]


def question_pairs(articles: Sequence[Item], names: LawNames) -> list[Pair]:
    """The real questions alone (once each), resolved against these articles: the dense index's question memory."""
    index = {(a.law_full, a.article, a.sub): n for n, a in enumerate(articles)}
    merged: dict[str, list[int]] = {}
    for question, golds in real_pairs(index, names):
        known = merged.setdefault(question, [])
        known.extend(g for g in golds if g not in known)
    return list(merged.items())


def real_pairs(index: dict, names: LawNames) -> Iterator[Pair]:
    """The shipped questions whose cited articles are in the KB.

    A record gives its articles as citations (`cites`: "《民法典》第一千零七十六条") or, when their law names
    cannot be written as one (a judicial interpretation's title holds 《》 itself), resolved (`gold`: [{"law":
    LawRefBook title, "article", "sub"}]; `cites` then only shows the source's own names)."""
    text = resources.files("lawtune.kb").joinpath(PAIRS_FILE).read_text("utf-8")
    for line in text.splitlines():
        record = json.loads(line)
        golds = (named(record["gold"], index, names) if "gold" in record
                 else cited(" ".join(record["cites"]), index, names))
        if golds:
            yield record["question"][:MAX_QUERY], golds


def law_pairs(articles: Sequence[Item], index: dict, names: LawNames, seed: int) -> Iterator[Pair]:
    rng = random.Random(seed)
    for n, article in enumerate(articles):
        sentences = [s for s in SENTENCE_RE.findall(article.text) if len(s) >= MIN_SENTENCE]
        if len(sentences) >= 2:  # one sentence alone is the whole article: nothing to learn
            yield rng.choice(sentences)[:MAX_QUERY], [n]
        if article.path:
            yield f"{article.law} {article.path.split(' / ')[-1]}", [n]
        if not STATUTE_RE.match(article.law_full or "") and "第" in article.text:
            golds = [g for g in cited(article.text, index, names) if articles[g].law_full != article.law_full]
            rest = CITATION_TEXT_RE.sub("", article.text)
            if golds and len(rest) >= 2 * MIN_SENTENCE:
                yield rest[:MAX_QUERY], golds[:3]


def named(gold: list[dict], index: dict, names: LawNames) -> list[int]:
    """Indices of the articles {"law", "article", "sub"} names (a whole article also matches its first paragraph)."""
    out: list[int] = []
    for article in gold:
        law_full = names.resolve(article["law"])
        n = index.get((law_full, article["article"], article.get("sub", 0)))
        if n is None:
            n = index.get((law_full, article["article"], 0))
        if n is not None and n not in out:
            out.append(n)
    return out


def cited(text: str, index: dict, names: LawNames) -> list[int]:
    """Indices of the articles `text` cites (a citation of a whole article also matches its first paragraph)."""
    out: list[int] = []
    for citation in find_citations(text, names):
        if not citation.law_full or citation.article is None:
            continue
        n = index.get((citation.law_full, citation.article, citation.sub))
        if n is None:
            n = index.get((citation.law_full, citation.article, 0))
        if n is not None and n not in out:
            out.append(n)
    return out
