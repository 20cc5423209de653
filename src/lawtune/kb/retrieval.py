"""What `store.search` does on top of a backend's plain full-text ranking; engine-independent.

    retriever = Retriever(store)            # any KnowledgeStore: needs text_search, lookup, catalog
    hits = retriever.search("劳动合同法第82条是什么", k=5)

1. Named articles first: citations in the question (劳动合同法第82条, 民法典第一千零七十六条,
   《中华人民共和国劳动合同法》第八十二条, 第十七条之一) are looked up exactly and lead the list (`exact=True`).
2. Named laws: when the question names a law, that law's articles are searched too and their scores are
   multiplied by `LAW_BOOST`, so they outrank same-score articles of other laws.
3. Statutes first: articles of laws passed by the NPC (中华人民共和国…法 / 法典) get ×`STATUTE_BOOST` over
   regulations, rules and judicial interpretations of the same text score. That is the order of legal
   authority, and answers cite the statute: 86 % of LawBench 3-2's cited articles are statute articles, while
   the index of all of LawRefBook is mostly other documents. recall@5 0.624 → 0.66 (current versions).
4. The rest is the backend's BM25 (law name weighted ×2), current versions only unless asked otherwise.

Measured on LawBench 3-2 with benchmarks/kb_retrieval.py (docs/knowledge-base.md): re-ranking the top 100 by
law-level score aggregation, law-name-core matches, query-term coverage and pseudo-relevance feedback each
moved recall@5 by less than ±0.01 or lowered it, so none is kept; 3-2 questions name no law (the boost
above is for users who do) and only 13 of 487 cite 刑法, so crime-name detection has nothing to act on there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lawtune.kb.citations import find_citations
from lawtune.kb.names import LawNames
from lawtune.kb.store import Hit, Kind

LAW_BOOST = 1.5
STATUTE_BOOST = 1.3
STATUTE_RE = re.compile(r"^中华人民共和国.*(法|法典)(（[^（）]*）)?$")
POOL = 100  # candidates re-ranked per search


class Retriever:
    def __init__(self, store):
        self.store = store
        catalog = store.catalog()
        self.names = LawNames([*catalog.versions, *catalog.repealed])

    def search(self, query: str, k: int = 5, *, current_only: bool = True,
               kinds: Iterable[Kind] = ("article", "qa")) -> list[Hit]:
        kinds = tuple(kinds)
        exact: list[Hit] = []
        if "article" in kinds:
            for citation in find_citations(query, self.names):
                if citation.law_full and citation.article is not None:
                    item = self.store.lookup(citation.law_full, citation.article, citation.sub)
                    if item and all(h.item != item for h in exact):
                        exact.append(Hit(item, score=0.0, exact=True))
        pool = max(POOL, k)
        hits = {self._key(h): h for h in self.store.text_search(query, pool, current_only=current_only, kinds=kinds)}
        named = list(dict.fromkeys(law for _, _, law in self.names.find(query)))
        if named and "article" in kinds:
            for hit in self.store.text_search(query, pool, current_only=current_only, laws=named, kinds=("article",)):
                hits[self._key(hit)] = hit
        ranked = sorted((self._rescore(h, named) for h in hits.values()), key=lambda h: h.score, reverse=True)
        seen = {self._key(h) for h in exact}
        rest = [h for h in ranked if self._key(h) not in seen]
        # named articles lead: give them finite scores above every text match (JSON has no Infinity)
        top = (rest[0].score if rest else 0.0) + 1.0
        exact = [Hit(h.item, top + len(exact) - n, exact=True) for n, h in enumerate(exact)]
        return (exact + rest)[:k]

    @staticmethod
    def _key(hit: Hit) -> tuple:
        item = hit.item
        return (item.kind, item.law_full, item.article, item.sub, item.version, item.question, item.text[:40])

    def _rescore(self, hit: Hit, named: list[str]) -> Hit:
        score = hit.score
        if hit.item.law_full in named:
            score *= LAW_BOOST
        if STATUTE_RE.match(hit.item.law_full):
            score *= STATUTE_BOOST
        return Hit(hit.item, score, hit.exact)
