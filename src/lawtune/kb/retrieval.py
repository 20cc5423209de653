"""The knowledge base's search: what `Retriever.search` does on top of a backend's plain full-text ranking;
engine-independent. Every caller searches through a retriever built over an open store (`Rag`, `kb search`,
`kb search --queries`, serving, the KB tools); the store only stores and ranks text and never calls back.

    with open_store("kb.sqlite") as store:
        retriever = Retriever(store)            # any KnowledgeStore: text_search, char_scores, lookup, catalog, ...
        hits = retriever.search("劳动合同法第82条是什么", k=5)

1. Named articles first: citations in the question (劳动合同法第82条, 民法典第一千零七十六条,
   《中华人民共和国劳动合同法》第八十二条, 第十七条之一) are looked up exactly and lead the list (`exact=True`).
2. Named laws: when the question names a law, that law's articles are searched too and their scores are
   multiplied by `LAW_BOOST`, so they outrank same-score articles of other laws.
3. Statutes first: articles of laws passed by the NPC (中华人民共和国…法 / 法典) get ×`STATUTE_BOOST` over
   regulations, rules and judicial interpretations of the same text score. That is the order of legal
   authority, and answers cite the statute: 86 % of LawBench 3-2's cited articles are statute articles, while
   the index of all of LawRefBook is mostly other documents. recall@5 0.624 → 0.66 (current versions).
4. Q&A items as a bridge: a layperson's wording ("他不离婚我怎么办") is closer to other laypeople's questions
   than to statute text ("夫妻一方要求离婚的，可以…提起离婚诉讼"). When the KB holds Q&A items, the best
   `QA_VOTERS` Q&A items among the BM25 candidates (the pool query always includes Q&A, so this costs no second
   query) vote for the articles their answers cite (`find_citations`; `kb build` ends the answer with the
   record's `laws` list when it has one): article score = its BM25 score (after 2.–3.) + `BRIDGE_WEIGHT` × the
   sum of the BM25 scores of the Q&A items citing it. Scores share one scale, so a weak Q&A match moves little,
   and a cited article outside the BM25 candidates can still come up (looked up). Q&A items keep their place
   when `kinds` includes "qa", else they only vote. Without Q&A items (the bundled KB) nothing changes.
   Measured (docs/knowledge-base.md): 1,000 held-out consultations → 民法典 articles, bundled laws + 1,000
   other consultations' Q&A: hit@1 / @5 of a cited article 0.070 / 0.172 → 0.505 / 0.769; LawBench 3-2 (its
   answers cite 民法典 in 2 of 500, the Q&A only 民法典): recall@5 0.659 → 0.649. Reciprocal-rank fusion
   (`FUSION = "rrf"`): 0.413 / 0.776 and 3-2 0.632; a separate Q&A-only query instead of the candidates costs a
   second full-text query (+25–50 ms on all of LawRefBook) for no gain.
5. One hit per provision, in every version's wording: the BM25 query runs over all versions, and an older
   version's article becomes the current article of the same provision (versions.py) at the better score of the
   two, with `Hit.via` naming the older article ("2018-10-26 第一百四十六条"). Questions and answers written
   against an old text use its words and numbers (公司法 2018 第一百四十六条 is 2023 第一百七十八条). Articles
   the current version no longer has are dropped, or kept as they are when searching all versions.
6. The asking sentence counts more: a scenario ends with the question it asks ("…。根据哪条法律，董事会可以决定由
   董事会成员兼任经理？"), which paraphrases the rule; `ask_clause` cuts it out without the boilerplate and a
   second BM25 query adds `ASK_WEIGHT` × its scores. LawBench 3-2 recall@5 of the cited provision, current
   versions: 0.725 without it, 0.735 / 0.743 / 0.741 / 0.735 at weight 0.3 / 0.5 / 0.7 / 1.0; on 1,000
   consultations (docs/knowledge-base.md) 0.769 either way.
7. Single characters count too: bigrams miss words that share a character but no bigram (a layperson's 手枪 /
   残障 / 电商, the statute's 枪支 / 残疾 / 电子商务). Every full-text match's score gets + `CHAR_WEIGHT` × the
   backend's score of the query's single CJK characters over that hit (`store.char_scores`: BM25 as FTS5 would
   compute it for SQLite, Σ idf · ts_rank for PostgreSQL, so the two add on the same scale; character counts
   are kept at build / add). The classic 1+2-gram mix of Chinese retrieval, applied to the candidates only:
   indexing characters in FTS5 doubled the query time (103 ms median). Weight 1 (the two tokenizations count
   alike), not tuned. Measured with `--char-weight 0` / default: LawBench 3-2 recall@5 of the cited provision
   0.741 → 0.752 (13 questions gained, 8 lost; 0.756 → 0.766 all versions; PostgreSQL 0.717 → 0.743), 1,000
   consultations hit@5 0.769 → 0.784, kb_rag_eval (bundled laws) recall@3 0.164 → 0.189, hit@3 0.415 → 0.472.
8. A learned retriever fills the vocabulary gap: `kb build` trains static n-gram embeddings on question →
   article pairs (encoder.py, dense.py: real consultations and exam cases with the articles their answers
   cite, plus the pairs the laws give — a sentence → its article, an interpretation → the statute it cites) and
   stores a vector per current article. Every hit's score becomes its score ÷ the best score of the list +
   `DENSE_WEIGHT` × the cosine of the question and the article, and the `DENSE_POOL` articles nearest the
   question join the candidates (with the cosine alone) — so an article that shares no word with the question
   can still come up. The index's question memory adds `MEMORY_WEIGHT` × the votes of the `MEMORY_NEIGHBOURS`
   shipped training questions nearest the question (each votes for its articles with cosine ** `MEMORY_POWER`,
   dense.DenseIndex.votes), and voted articles join too: a layperson's question is nearer another layperson's
   question than the statute's words. Measured in docs/knowledge-base.md ("The learned retriever", "The
   question memory"): on the tuning sets recall@5 stard_tune 0.487 → 0.511, consult_dev 0.243 → 0.542,
   LawBench 3-8 0.182 → 0.218, 3-2 0.736 → 0.734 (tuned on); STARD dev (held out) 0.466 → 0.516. The KB's own
   Q&A items among the candidates vote the same way (for themselves and the articles they cite), so what `kb add`
   brings is not outvoted by the shipped questions.
   A law stage (`_law_stage`, lawstage.py: every candidate × (1 + `LAW_WEIGHT` × P(its law | question))) exists
   but is off (`LAW_WEIGHT` 0): the learned law model and the memory's laws were measured and did not meet the
   tuning rule (docs/knowledge-base.md, "Session 32"), nor did session 33's gates on the kind of question and its
   character n-gram law classifier ("Session 33").
   Then the candidates' citations vote (`_cited_votes`): each of the best `CITED_VOTERS` candidates that cites
   another law's articles — a judicial interpretation's 依照刑法第二百六十四条…, a regulation's 依据… — adds
   `CITED_WEIGHT` × its score ÷ the best score, shared among what it cites. Facts of a case share the
   interpretations' words; the statute article they apply often shares none (docs/knowledge-base.md, "Session
   36": LawBench 3-1, judgment facts → 刑法, recall@5 0.485 → 0.592).
9. The rest is the backend's BM25 (law name weighted ×2).

Measured on LawBench 3-2 with benchmarks/kb_retrieval.py (docs/knowledge-base.md): re-ranking the top 100 by
law-level score aggregation, law-name-core matches, query-term coverage and pseudo-relevance feedback each
moved recall@5 by less than ±0.01 or lowered it, so none is kept; 3-2 questions name no law (the boost
above is for users who do) and only 13 of 487 cite 刑法, so crime-name detection has nothing to act on there.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from dataclasses import replace

from lawtune.kb.citations import find_citations
from lawtune.kb.dense import load_dense
from lawtune.kb.names import LawNames
from lawtune.kb.store import Catalog, Hit, Item, Kind

LAW_BOOST = 1.5
STATUTE_BOOST = 1.3
STATUTE_RE = re.compile(r"^中华人民共和国.*(法|法典)(（[^（）]*）)?$")
POOL = 100  # candidates re-ranked per search
QA_VOTERS = 10  # Q&A hits whose cited articles vote (the bridge, 4. above)
RRF_K = 60
BRIDGE_WEIGHT = 0.5  # weight of the Q&A votes; 0 turns the bridge off
QA_FROM_POOL = True  # voters: the Q&A items among the POOL candidates (True) or a separate Q&A-only query
FUSION = "sum"  # "sum": BM25 + weight × summed BM25 of the citing Q&A; "rrf": reciprocal-rank fusion of the rankings
FOLD_VERSIONS = True  # search matches older versions' wording and returns one hit per provision (_fold_versions)
ASK_WEIGHT = 0.5  # extra weight of the asking sentence's words (ask_clause); 0 turns it off
CHAR_WEIGHT = 1.0  # weight of the candidates' single-character score (store.char_scores); 0 turns it off
DENSE_WEIGHT = 1.0  # weight of the learned retriever's cosine against the list-normalized score (8.); 0: off
DENSE_POOL = 100  # articles nearest the question in the dense index that join the candidates
# weight of the question memory's votes (8.; dense.DenseIndex.votes; the KB's own Q&A items vote on the same scale,
# _qa_votes); 0: off. 1.5 was chosen on the tuning sets (STARD dev 0.466 → 0.516 recall@5 held out); its cost: a new
# law on a topic the memory knows may rank below the articles the memory votes for (docs/knowledge-base.md,
# "The question memory")
MEMORY_WEIGHT = 1.5
MEMORY_NEIGHBOURS = 10  # training questions that vote
MEMORY_POWER = 3.0  # a neighbour votes with cosine ** this (only close questions count)
MEMORY_FLOOR = 0.0  # a neighbour less similar than this does not vote (0.7 kept kb add's new law first but cut STARD dev recall@5 0.516 → 0.484)
# the law stage (lawstage.py, stored with the dense index): every candidate's score × (1 + LAW_WEIGHT × P(its law |
# question)) ("mult") or + LAW_WEIGHT × P ("add"); 0: off
LAW_WEIGHT = 0.0
# the best CITED_VOTERS candidates vote for the other laws' articles their text cites (8., _cited_votes); 0: off
CITED_WEIGHT = 1.0  # chosen on the tuning sets (session 36): 0.5 / 1.0 / 2.0
CITED_VOTERS = 10
LAW_MODE = "mult"
SENTENCE_END_RE = re.compile(r"(?<=[。！？?!；;])")
BOILERPLATE_RE = re.compile(r"(根据|依据|按照)?(中国的|我国的?)?(相关|哪[一个条部些]*)?(的)?"
                            r"(法律|法规|法条|条款|条文|规定|文件)+[，,]?")


class Retriever:
    """The search algorithm above, run on one open store's storage and ranking primitives (`text_search`,
    `char_scores`, `lookup`, `catalog`, `count`, the dense blob). What it learns of the KB (law names, whether
    it holds Q&A, the dense index) is read at the first search and again whenever the store's `refresh()`
    generation moves: a `kb add` through this store or, seen by `refresh`, another process's. Thread-safe like
    its store."""

    def __init__(self, store):
        self.store = store
        # None: the module's MEMORY_WEIGHT. Training rows set 0 (rag_examples): a training question must not
        # retrieve through its own memory entry, or its gold article is (almost) always in the material
        self.memory_weight: float | None = None
        self._generation: int | None = None  # the store's generation `_fresh` read the KB at (None: not yet)

    def _fresh(self) -> None:
        """Read the KB's law names, Q&A presence and dense index again if the KB changed since."""
        generation = self.store.refresh()
        if generation == self._generation:
            return
        catalog = self.store.catalog()
        self.names = LawNames([*catalog.versions, *catalog.repealed])
        self.has_qa = bool(self.store.count().get("qa"))
        self.dense = load_dense(self.store) if DENSE_WEIGHT > 0 else None  # None: a KB without a dense index
        self._cited: dict[str, list[tuple[str, int, int]]] = {}  # Q&A answer → articles it cites
        self._generation = generation

    def lookup(self, law: str, article: int, sub: int = 0, version: str | None = None) -> Item | None:
        """The store's exact lookup, so that a reader of the KB (tools/kb_tools.py) holds one object."""
        return self.store.lookup(law, article, sub, version)

    def catalog(self) -> Catalog:
        """The store's catalog (the same reader's law names)."""
        return self.store.catalog()

    def search(self, query: str, k: int = 5, *, current_only: bool = True,
               kinds: Iterable[Kind] = ("article", "qa")) -> list[Hit]:
        """Named articles first, then law-aware, re-ranked text matches (steps 1–9 above), best first."""
        self._fresh()
        kinds = tuple(kinds)
        exact: list[Hit] = []
        if "article" in kinds:
            for citation in find_citations(query, self.names):
                if citation.law_full and citation.article is not None:
                    item = self.store.lookup(citation.law_full, citation.article, citation.sub)
                    if item and all(h.item != item for h in exact):
                        exact.append(Hit(item, score=0.0, exact=True))
        pool = max(POOL, k)
        bridge = self.has_qa and "article" in kinds and BRIDGE_WEIGHT > 0
        pool_kinds = tuple(dict.fromkeys((*kinds, "qa"))) if bridge and QA_FROM_POOL else kinds
        # match every version's wording, then fold older versions' articles into the current ones
        every_version = not current_only or FOLD_VERSIONS
        hits = {self._key(h): h for h in self._text_search(query, pool, current_only=not every_version,
                                                           kinds=pool_kinds)}
        ask = ask_clause(query) if ASK_WEIGHT > 0 else ""
        if ask:
            for hit in self._text_search(ask, pool, current_only=not every_version, kinds=pool_kinds):
                known = hits.setdefault(self._key(hit), Hit(hit.item, 0.0))
                hits[self._key(hit)] = Hit(known.item, known.score + ASK_WEIGHT * hit.score)
        named = list(dict.fromkeys(law for _, _, law in self.names.find(query)))
        if named and "article" in kinds:
            for hit in self._text_search(query, pool, current_only=not every_version, laws=named,
                                         kinds=("article",)):
                hits[self._key(hit)] = Hit(hit.item, max(hit.score, hits.get(self._key(hit), hit).score))
        ranked = sorted((self._rescore(h, named) for h in hits.values()), key=lambda h: h.score, reverse=True)
        if FOLD_VERSIONS:
            ranked = self._fold_versions(ranked, keep_dropped=not current_only)
        if bridge:
            if QA_FROM_POOL:  # the Q&A items among the candidates vote; the pool query needs no second pass
                voters = [h for h in hits.values() if h.item.kind == "qa"]
                voters = sorted(voters, key=lambda h: h.score, reverse=True)[:QA_VOTERS]
            else:
                voters = self._text_search(query, QA_VOTERS, current_only=current_only, kinds=("qa",))
            ranked = [h for h in self._bridge(ranked, voters, current_only) if h.item.kind in kinds]
        if self.dense is not None and "article" in kinds:
            ranked = self._fuse_dense(query, ranked, k, kinds)
        seen = {self._key(h) for h in exact}
        rest = [h for h in ranked if self._key(h) not in seen]
        # named articles lead: give them finite scores above every text match (JSON has no Infinity)
        top = (rest[0].score if rest else 0.0) + 1.0
        exact = [Hit(h.item, top + len(exact) - n, exact=True) for n, h in enumerate(exact)]
        return (exact + rest)[:k]

    def _text_search(self, query: str, k: int, **options) -> list[Hit]:
        """The backend's full-text ranking (character bigrams), each hit's score + `CHAR_WEIGHT` × the backend's
        score of its single characters (`char_scores`, 7. in the module docstring)."""
        hits = self.store.text_search(query, k, **options)
        if CHAR_WEIGHT <= 0 or not hits:
            return hits
        scores = self.store.char_scores(query, [h.item for h in hits])
        return [replace(h, score=h.score + CHAR_WEIGHT * s) for h, s in zip(hits, scores)]

    def _bridge(self, ranked: list[Hit], voters: list[Hit], current_only: bool) -> list[Hit]:
        """Fuse the BM25 ranking with the articles cited by the best Q&A matches (4. in the module docstring)."""
        votes: dict[tuple[str, int, int], float] = {}
        for hit in voters:
            weight = hit.score if FUSION == "sum" else (hit.score / voters[0].score if voters[0].score > 0 else 1.0)
            for ref in self._citations(hit.item.text):
                votes[ref] = votes.get(ref, 0.0) + weight
        if not votes:
            return ranked
        by_ref = {(h.item.law_full, h.item.article, h.item.sub): h for h in ranked if h.item.kind == "article"}
        if FUSION == "sum":
            fused = {self._key(h): [h, h.score] for h in ranked}
        else:
            fused = {self._key(h): [h, 1 / (RRF_K + n)] for n, h in enumerate(ranked, 1)}
        for n, (ref, vote) in enumerate(sorted(votes.items(), key=lambda kv: kv[1], reverse=True), 1):
            hit = by_ref.get(ref)
            if hit is None:  # cited, but not among the BM25 candidates
                item = self.store.lookup(*ref)
                if item is None or (current_only and not item.current):
                    continue
                hit = Hit(item, 0.0)
            entry = fused.setdefault(self._key(hit), [hit, 0.0])
            entry[1] += BRIDGE_WEIGHT * (vote if FUSION == "sum" else 1 / (RRF_K + n))
        return [replace(h, score=score) for h, score in sorted(fused.values(), key=lambda e: e[1], reverse=True)]

    def _fuse_dense(self, query: str, ranked: list[Hit], k: int, kinds: tuple) -> list[Hit]:
        """Score ÷ the list's best + DENSE_WEIGHT × cosine + MEMORY_WEIGHT × the question memory's vote; the
        articles nearest the question and those voted for join (8. above). Articles only the dense index found
        are looked up only when they reach the top k."""
        vector = self.dense.query_vector(query)
        if not vector.any():
            return ranked
        best = ranked[0].score if ranked and ranked[0].score > 0 else 1.0
        keys = [_dense_key(h) for h in ranked]
        cosines = iter(self.dense.cosines(vector, [key for key in keys if key]))
        memory = MEMORY_WEIGHT if self.memory_weight is None else self.memory_weight
        votes = (self.dense.votes(vector, MEMORY_NEIGHBOURS, MEMORY_POWER, MEMORY_FLOOR) if memory > 0 else {})
        own = self._qa_votes(vector, ranked, votes) if memory > 0 else {}
        scored: list[tuple[float, Hit | tuple]] = [
            (h.score / best + (DENSE_WEIGHT * next(cosines) + memory * votes.get(key, 0.0) if key
                               else memory * own.get(id(h), 0.0)), h)
            for h, key in zip(ranked, keys)]
        present = set(filter(None, keys))
        if "article" in kinds:
            near = [(key, cosine) for key, cosine in self.dense.top(vector, DENSE_POOL) if key not in present]
            scored += [(DENSE_WEIGHT * cosine + memory * votes.get(key, 0.0), key) for key, cosine in near]
            present.update(key for key, _ in near)
            voted = [key for key in votes if key not in present]
            scored += [(DENSE_WEIGHT * cosine + memory * votes[key], key)
                       for key, cosine in zip(voted, self.dense.cosines(vector, voted))]
        if CITED_WEIGHT > 0 and "article" in kinds:
            scored = self._cited_votes(scored)
        if LAW_WEIGHT > 0 and self.dense.law_model is not None:
            scored = self._law_stage(vector, scored)
        scored.sort(key=lambda pair: pair[0], reverse=True)
        fused: list[Hit] = []
        for score, entry in scored:
            if isinstance(entry, Hit):
                fused.append(replace(entry, score=score))
            elif len(fused) < k + 5:  # a dense-only article that can still make the top k: fetch it
                item = self.store.lookup(*entry)
                if item is not None and item.current:
                    fused.append(Hit(item, score))
        return fused

    def _cited_votes(self, scored: list[tuple[float, "Hit | tuple"]]) -> list[tuple[float, "Hit | tuple"]]:
        """The best CITED_VOTERS candidates that cite another law's articles (a judicial interpretation's 依照刑法
        第二百六十四条…, a regulation's 依据…) vote for them: CITED_WEIGHT × the voter's score ÷ the best score, shared
        among what it cites. Facts of a case match the interpretations' wording; the statute they apply is cited."""
        voters = heapq.nlargest(CITED_VOTERS, scored, key=lambda pair: pair[0])  # the caller sorts the whole list
        if not voters or voters[0][0] <= 0:
            return scored
        top = voters[0][0]
        votes: dict[tuple[str, int, int], float] = {}
        for score, entry in voters:
            item = entry.item if isinstance(entry, Hit) else self.store.lookup(*entry)
            if item is None or item.kind != "article":
                continue
            refs = [ref for ref in self._citations(item.text) if ref[0] != item.law_full]
            for ref in refs:
                votes[ref] = votes.get(ref, 0.0) + CITED_WEIGHT * score / top / len(refs)
        if not votes:
            return scored
        out = []
        for score, entry in scored:
            key = entry if isinstance(entry, tuple) else _dense_key(entry)
            out.append((score + votes.pop(key, 0.0) if key else score, entry))
        return out + [(vote, key) for key, vote in votes.items()]

    def _law_stage(self, vector, scored: list[tuple[float, "Hit | tuple"]]) -> list[tuple[float, "Hit | tuple"]]:
        """Lift the candidates of the laws the law model predicts for the question (LAW_WEIGHT, LAW_MODE)."""
        probabilities = self.dense.law_model.probabilities(vector)
        out = []
        for score, entry in scored:
            law = entry.item.law_full if isinstance(entry, Hit) else entry[0]
            p = probabilities.get(law, 0.0) if law else 0.0
            out.append((score * (1.0 + LAW_WEIGHT * p) if LAW_MODE == "mult" else score + LAW_WEIGHT * p, entry))
        return out

    def _qa_votes(self, vector, ranked: list[Hit], votes: dict) -> dict[int, float]:
        """The KB's own Q&A items among the candidates are questions with their articles too: each votes like a
        memory question (cosine ** MEMORY_POWER of its question and the query) for the articles its answer cites,
        added to `votes`, and for itself (returned by id of its hit). Without this a Q&A item that `kb add` brings
        would be outvoted by the shipped memory: what was just added must lead its own question."""
        asked = [h for h in ranked if h.item.kind == "qa" and h.item.question]
        if not asked:
            return {}
        own: dict[int, float] = {}
        for hit, row in zip(asked, self.dense.encoder.encode([h.item.question for h in asked], query=True)):
            cosine = float(row @ vector)
            weight = cosine ** MEMORY_POWER if cosine > MEMORY_FLOOR else 0.0
            own[id(hit)] = weight
            refs = self._citations(hit.item.text)
            for ref in refs:
                votes[ref] = votes.get(ref, 0.0) + weight / len(refs)
        return own

    def _fold_versions(self, ranked: list[Hit], keep_dropped: bool) -> list[Hit]:
        """One hit per provision: an older version's article becomes the current article of the same provision
        (versions.py), at the best score of its versions. An article the current version no longer has is
        dropped, or kept as it is with `keep_dropped` (search of all versions)."""
        folded: dict[tuple, Hit] = {}
        for hit in ranked:  # best first: the first hit of a provision keeps its place
            item, via = hit.item, ""
            if item.kind == "article" and not item.current:
                current = item.current_article and self.store.lookup(item.law_full, item.current_article,
                                                                     item.current_sub)
                if current and current.current:
                    item, via = current, f"{hit.item.version} {hit.item.cite().split('》', 1)[-1]}"
                elif not keep_dropped:
                    continue
            key = self._key(Hit(item, 0.0))
            if key not in folded:
                folded[key] = Hit(item, hit.score, hit.exact, via)
        return list(folded.values())

    def _citations(self, text: str) -> list[tuple[str, int, int]]:
        if text not in self._cited:
            if len(self._cited) > 10_000:
                self._cited.clear()
            refs = (c for c in find_citations(text, self.names) if c.law_full and c.article is not None)
            self._cited[text] = list(dict.fromkeys((c.law_full, c.article, c.sub) for c in refs))
        return self._cited[text]

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
        return replace(hit, score=score)


def _dense_key(hit: Hit) -> tuple[str, int, int] | None:
    item = hit.item
    return (item.law_full, item.article, item.sub) if item.kind == "article" and item.current else None


def ask_clause(query: str) -> str:
    """The sentence that asks, without its "根据哪条法律规定" boilerplate, when the query has more than one sentence.

    Scenario questions tell a story, then ask ("…。根据哪条法律，董事会可以决定由董事会成员兼任经理？"); the
    asking sentence paraphrases the rule the answer cites, so its words count `ASK_WEIGHT` more. "" for a
    one-sentence query (nothing to single out).
    """
    sentences = [s for s in SENTENCE_END_RE.split(query.strip()) if s.strip()]
    if len(sentences) < 2:
        return ""
    return BOILERPLATE_RE.sub("", sentences[-1]).strip()
