"""Do answers use what they were given? Cited articles against the retrieved ones and the reference's.

    from lawtune.kb.grounding import ArticleKeys, grounding_metrics
    keys = ArticleKeys(checker, store)          # store (optional): renumbered articles of older versions
    keys.cited("依据《民法典》第一千零七十九条……")  # [("中华人民共和国民法典", 1079, 0)]
    rows, metrics = grounding_metrics(keys, answers, references, retrieved=[[hit_key(h) for h in hits], ...])

`lawtune eval` / `compare` call this with `--kb` (and `--check-kb` alone: no retrieved articles then). Articles
are compared as (law full name, article, 之N) in the law's CURRENT numbering: a citation the checker finds only in
an older version is mapped through `Item.current_article` (versions.py) when a store is given, so an answer that
quotes the old number of a retrieved provision (a hit's `via`) counts as citing it. Citations of a law alone (no
article) are not articles and are left out of both metrics.

Metrics (×100, with the counts they are shares of):
- `retrieved_citation_pct`: of the distinct articles each answer cites, the share among the articles retrieved
  for its question (`retrieved_citation_n` = all such cited articles), pooled over answers;
- `reference_agreement_pct`: of the questions whose reference answer cites an article (`reference_questions`),
  the share whose answer cites at least one of those articles;
- `reference_retrieved_pct`: of the same questions, the share whose retrieved articles hold one of them (what
  retrieval made possible);
- `retrieved_fit_pct`: of the retrieved articles the answers to those questions cite (`retrieved_fit_n`), the share
  the reference cites too: low when a model quotes whatever it is given (under the citation constraint, where
  `retrieved_citation_pct` is ~100 % by construction, this is the one that says whether the quote fits);
- `instruction_echo_pct`: answers that repeat a clause of the RAG instruction (`echoes_instruction`);
- `no_fit_pct`: answers that open by saying the material does not fit (`kb.wording.says_no_fit`, what RAG training
  teaches when no gold article is in the prompt); with retrieval, of the questions whose reference cites an article,
  `no_fit_when_absent_pct` (none of its articles retrieved: saying so is right; `no_fit_absent_n` questions) and
  `no_fit_when_present_pct` (one was retrieved: saying so is wrong; `no_fit_present_n`).
"""

from __future__ import annotations

import re
from typing import Any

from lawtune.kb.citations import Citation
from lawtune.kb.store import Hit
from lawtune.kb.wording import INSTRUCTION, says_no_fit

Key = tuple[str, int, int]  # (law full name, article, sub) in the current version's numbering

# the instruction before issue 23, which the demo model echoed: still counted, so old runs are measured alike
OLD_INSTRUCTION = ("请参考下列法律资料回答问题。资料编号[资料N]只是编号，不是法条序号；引用法条时写成《法名》第N条。"
                   "如果资料与问题无关，请说明“所给资料不适用”，再根据法律常识回答。")
ECHO_MIN_CHARS = 6  # shorter clauses ("不引用法条") also occur in answers written without any prompt


def hit_key(hit: Hit) -> Key:
    """The article a hit put in the prompt (search returns current versions)."""
    return (hit.item.law_full, hit.item.article, hit.item.sub)


def instruction_clauses() -> list[str]:
    clauses = re.split(r"[。；，：？！]", f"{INSTRUCTION}。{OLD_INSTRUCTION}")
    return sorted({c.strip("“”") for c in clauses if len(c.strip("“”")) >= ECHO_MIN_CHARS})


def echoes_instruction(answer: str, clauses: list[str] | None = None) -> bool:
    """True when the answer repeats a clause of the RAG instruction (current or the old one) word for word."""
    return any(clause in answer for clause in clauses or instruction_clauses())


class ArticleKeys:
    """Citations of a text → article keys in the current numbering (a CitationChecker plus, optionally, a store)."""

    def __init__(self, checker: Any, store: Any = None):
        self.checker, self.store = checker, store
        self._renumbered: dict[Key, Key] = {}

    def key(self, citation: Citation) -> Key | None:
        if citation.article is None or citation.law_full is None:
            return None
        key = (citation.law_full, citation.article, citation.sub)
        current = self.checker.catalog.current(citation.law_full)
        if current is None or (citation.article, citation.sub) in current.articles or self.store is None:
            return key
        if key not in self._renumbered:  # only in an older version: its number in the current one, if it has one
            item = self.store.lookup(citation.law_full, citation.article, citation.sub)
            self._renumbered[key] = ((citation.law_full, item.current_article, item.current_sub)
                                     if item is not None and not item.current and item.current_article else key)
        return self._renumbered[key]

    def cited(self, text: str) -> list[Key]:
        """The distinct articles the text cites, in order."""
        keys = (self.key(c) for c in self.checker.citations(text))
        return list(dict.fromkeys(k for k in keys if k is not None))


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def grounding_metrics(keys: ArticleKeys, answers: list[str], references: list[str],
                      retrieved: list[list[Key]] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(per-answer records, summary) as the module docstring defines them; `retrieved` None: no retrieval."""
    clauses = instruction_clauses()
    rows, cited_n, inside_n, ref_n, agree_n, ref_retrieved_n, echo_n, quoted_n, fit_n = [], 0, 0, 0, 0, 0, 0, 0, 0
    no_fit = {True: [0, 0], False: [0, 0]}  # reference's article retrieved? → [answers saying no fit, questions]
    for i, (answer, reference) in enumerate(zip(answers, references)):
        cited, wanted = keys.cited(answer), set(keys.cited(reference))
        row: dict[str, Any] = {"cited_articles": [list(k) for k in cited], "echoes_instruction": echoes_instruction(answer, clauses),
                               "says_no_fit": says_no_fit(answer)}
        echo_n += row["echoes_instruction"]
        given = set(retrieved[i]) if retrieved is not None else set()
        if retrieved is not None:
            row["cited_in_retrieved"] = sum(k in given for k in cited)
            cited_n, inside_n = cited_n + len(cited), inside_n + row["cited_in_retrieved"]
        if wanted:
            row["reference_articles"] = [list(k) for k in sorted(wanted)]
            row["agrees_with_reference"] = bool(wanted & set(cited))
            ref_n, agree_n = ref_n + 1, agree_n + row["agrees_with_reference"]
            reference_retrieved = bool(wanted & given)
            ref_retrieved_n += reference_retrieved
            no_fit[reference_retrieved][0] += row["says_no_fit"]
            no_fit[reference_retrieved][1] += 1
            quoted = [k for k in cited if k in given]
            quoted_n, fit_n = quoted_n + len(quoted), fit_n + sum(k in wanted for k in quoted)
        rows.append(row)
    metrics: dict[str, Any] = {"reference_agreement_pct": _pct(agree_n, ref_n), "reference_questions": ref_n,
                               "instruction_echo_pct": _pct(echo_n, len(answers)),
                               "no_fit_pct": _pct(sum(row["says_no_fit"] for row in rows), len(answers))}
    if retrieved is not None:
        metrics.update(retrieved_citation_pct=_pct(inside_n, cited_n), retrieved_citation_n=cited_n,
                       reference_retrieved_pct=_pct(ref_retrieved_n, ref_n),
                       retrieved_fit_pct=_pct(fit_n, quoted_n), retrieved_fit_n=quoted_n,
                       no_fit_when_absent_pct=_pct(*no_fit[False]), no_fit_absent_n=no_fit[False][1],
                       no_fit_when_present_pct=_pct(*no_fit[True]), no_fit_present_n=no_fit[True][1])
    return rows, metrics
