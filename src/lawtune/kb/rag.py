"""Retrieval-augmented answers: the one place that decides how retrieved articles reach the model.

    from lawtune.kb.rag import Rag
    with Rag.open("kb.sqlite", k=3) as rag:                 # `lawtune kb build -o kb.sqlite` makes one
        augmented = rag.augment(messages)                   # Augmented(messages, hits)
        outputs = generate(loaded, [augmented.messages], settings, cite=rag.constraint([augmented.hits]))
        verdicts = rag.check(outputs[0].text)               # citation verdicts of the answer
        augmented.references()                              # the retrieved articles as JSON records

`infer`, `chat`, `eval`, `compare` and `serve` take `--kb KB` and call this; `prepare --kb` builds training
examples with `build_prompt` so a tuned model sees the same format it is asked in.

The prompt (one fixed format; `rag_conversation`, pinned by a golden test): a short instruction as the
SYSTEM turn (merged in front of a system turn the conversation already has), and the LAST user turn replaced by
the k articles retrieved for it, each cut to `max_chars` characters and labelled [资料N] (so the list number is
never read as an article number), then the question. The instruction sits in the system part, apart from the
material and the question, and is word for word the same in training (`prepare --kb`, `rag_examples`) and at
inference: the demo model trained with the instruction inside the user turn echoed it into its answers. Gemma's
template pastes a system turn into the first user turn; the material stays in the last one, next to its
question, and the earlier turns stay as the user wrote them, which is also what a client sends back as history.
When retrieval finds nothing the conversation goes to the model unchanged.

Citation-constrained decoding (`rag.constraint(hits)`, on unless `--no-cite-constraint`): an article number the
answer writes after a law's name may only be one of the retrieved articles (`lawtune.kb.cite_constrain`).
Attribution (`rag.attribute(answer, hits)`, on unless `--no-attribute`): a retrieved article whose words the answer
repeats is named in a last line when the answer does not cite it by number (`lawtune.kb.attribution`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lawtune.errors import LawtuneError
from lawtune.kb import format_context
from lawtune.kb.store import Hit
from lawtune.kb.wording import INSTRUCTION
from lawtune.text import excerpt

DEFAULT_K = 3  # 3 × 200 characters keep the prompt near 500 tokens: room for a long answer in a small context
DEFAULT_MAX_CHARS = 200
MAX_QUERY_CHARS = 2000  # retrieval reads at most the question's last 2,000 characters (a bounded cost per request)
RAG_INPUT_LENGTH = 1536  # prompt tokens eval keeps by default with --kb (the material must not be cut away)


def build_prompt(question: str, hits: list[Hit], max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The user turn the model sees: the labelled excerpts, then the question (or the bare question)."""
    if not hits:
        return question
    return f"{format_context(hits, max_chars)}\n\n问题：{question}"


def rag_conversation(messages: list[dict[str, str]], hits: list[Hit],
                     max_chars: int = DEFAULT_MAX_CHARS) -> list[dict[str, str]]:
    """A copy of `messages` in the RAG format: INSTRUCTION as (the head of) the system turn, the last user turn
    replaced by `build_prompt`. Unchanged without hits or without a user turn. Training examples (messages
    ending with the answer) and questions go through this same function."""
    out = [dict(m) for m in messages]
    last = next((i for i in range(len(out) - 1, -1, -1) if out[i]["role"] == "user"), None)
    if last is None or not hits:
        return out
    out[last]["content"] = build_prompt(out[last]["content"], hits, max_chars)
    if out[0]["role"] == "system":
        out[0]["content"] = f"{INSTRUCTION}\n{out[0]['content']}"
    else:
        out.insert(0, {"role": "system", "content": INSTRUCTION})
    return out


def hit_record(hit: Hit, text_chars: int | None = None) -> dict[str, Any]:
    """A retrieved item as eval records and the API return it: law, article, sub, score first."""
    item = hit.item
    record: dict[str, Any] = {"kind": item.kind, "law": item.law, "article": item.article, "sub": item.sub,
                              "score": round(hit.score, 4), "exact": hit.exact}
    if hit.via:  # an older version's wording matched (retrieval.py, 5.)
        record["via"] = hit.via
    if text_chars is not None:
        record.update(cite=item.cite(), version=item.version, text=excerpt(item.text, text_chars))
    return record


@dataclass
class Augmented:
    messages: list[dict[str, str]]  # the conversation with the last user turn replaced by the RAG prompt
    hits: list[Hit] = field(default_factory=list)

    def references(self, text_chars: int | None = None) -> list[dict[str, Any]]:
        return [hit_record(hit, text_chars) for hit in self.hits]


class Rag:
    """A knowledge base (its store and the `Retriever` over it) plus the prompt format and the citation
    checker; thread-safe like its store."""

    def __init__(self, store: Any, k: int = DEFAULT_K, max_chars: int = DEFAULT_MAX_CHARS, location: str = "",
                 checker: Any = None, cite_constraint: bool = True, attribute: bool = True):
        from lawtune.kb.citations import CitationChecker

        if k < 1:
            raise LawtuneError(f"--kb-k must be at least 1, got {k}")
        if max_chars < 20:
            raise LawtuneError(f"--kb-chars must be at least 20 characters, got {max_chars}")
        from lawtune.kb.retrieval import Retriever

        self.store, self.k, self.max_chars, self.location = store, k, max_chars, location
        self.cite_constraint = cite_constraint  # decode article numbers only from the retrieved articles
        self.attribute_answers = attribute  # name the retrieved articles an answer repeats (`attribute`)
        self.retriever = Retriever(store)  # what every search goes through (the KB tools get it too)
        # verdicts against the same KB unless another (e.g. all of LawRefBook) is given: `open_checker`
        self._own_checker = checker is None
        self._generation = self._store_generation()
        self.checker = checker or CitationChecker(store.catalog())

    def _store_generation(self) -> int:
        refresh = getattr(self.store, "refresh", None)
        return refresh() if refresh is not None else 0

    def _fresh_checker(self) -> Any:
        """The citation checker, rebuilt when the KB changed since (a `kb add` while serving: a new law must
        not get `unknown_law`). One cheap generation check per answer."""
        from lawtune.kb.citations import CitationChecker

        if self._own_checker:
            generation = self._store_generation()
            if generation != self._generation:
                self.checker, self._generation = CitationChecker(self.store.catalog()), generation
        return self.checker

    @classmethod
    def open(cls, location: str | Path, k: int = DEFAULT_K, max_chars: int = DEFAULT_MAX_CHARS,
             cite_constraint: bool = True, attribute: bool = True) -> "Rag":
        from lawtune.kb import open_store

        return cls(open_store(location), k=k, max_chars=max_chars, location=str(location),
                   cite_constraint=cite_constraint, attribute=attribute)

    def __enter__(self) -> "Rag":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def retrieve(self, question: str) -> list[Hit]:
        # a search's cost grows with the query: a pasted document is searched by its end, where the question is
        question = question[-MAX_QUERY_CHARS:]
        return self.retriever.search(question, k=self.k) if question.strip() else []

    def augment(self, messages: list[dict[str, str]]) -> Augmented:
        """Retrieve for the last user turn and ask in the RAG format (`rag_conversation`)."""
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
        hits = self.retrieve(last) if last is not None else []
        return Augmented(rag_conversation(messages, hits, self.max_chars), hits)

    def constraint(self, hits_per_prompt: list[list[Hit]]) -> Any:
        """The citation constraint of these prompts' retrieved articles for `generate(..., cite=…)`, or None when
        it is switched off (`lawtune.kb.cite_constrain`). The checker's law names read the references."""
        if not self.cite_constraint:
            return None
        from lawtune.kb.cite_constrain import CiteConstraint

        return CiteConstraint(self._fresh_checker().names, hits_per_prompt)

    def attribute(self, answer: str, hits: list[Hit]) -> Any:
        """The answer with the retrieved articles it repeats named (`lawtune.kb.attribution.Attribution`); the
        answer unchanged, nothing quoted, when attribution is off (`--no-attribute`)."""
        from lawtune.kb.attribution import Attribution, attribute

        return attribute(answer, hits, self.max_chars) if self.attribute_answers else Attribution(answer)

    def check(self, answer: str) -> list[dict[str, Any]]:
        """The citation verdicts of one answer as JSON records (text, law_full, article, verdict, detail, …)."""
        return [verdict.to_json() for verdict in self._fresh_checker().check(answer)]

    def record(self) -> dict[str, Any]:
        """What eval writes to metrics.json about the KB: path, sha256 (of a file), k, excerpt length, counts."""
        path = Path(self.location)
        from lawtune.fsutil import sha256_file

        sha = sha256_file(path) if path.is_file() else None  # a PostgreSQL URL has no file to hash
        return {"path": self.location, "sha256": sha, "k": self.k, "max_chars": self.max_chars,
                "items": self.store.count(), "cite_constraint": self.cite_constraint,
                "attribute": self.attribute_answers}



def open_checker(location: str | Path) -> Any:
    """A CitationChecker over a KB's catalog (the store is closed again: the catalog is all it needs)."""
    from lawtune.kb import open_store
    from lawtune.kb.citations import CitationChecker

    with open_store(location) as store:
        return CitationChecker(store.catalog())


def citation_metrics(checker: Any, answers: list[str]) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """(per-answer verdict records, summary) of the citation check over a set of answers.

    Summary: citation_precision_pct = ok / all citations; nonexistent_citation_pct = (nonexistent_article +
    unknown_law) / all citations; cited_answers_pct = answers with at least one citation / answers (all ×100,
    0 when there is no citation); citations = how many; verdicts = count per verdict.
    """
    from lawtune.kb.citations import CheckSummary

    summary, rows = CheckSummary(), []
    for answer in answers:
        verdicts = checker.check(answer)
        summary.add(verdicts)
        rows.append([v.to_json() for v in verdicts])
    data = summary.to_json()
    metrics = {"citation_precision_pct": round(100 * summary.precision, 2),
               "nonexistent_citation_pct": round(100 * summary.nonexistent_rate, 2),
               "cited_answers_pct": round(100 * summary.answers_with_citations / max(summary.answers, 1), 2),
               "citations": summary.citations, "verdicts": data["verdicts"]}
    return rows, metrics


def open_eval_kb(kb: str | Path | None, check_kb: str | Path | None, k: int = DEFAULT_K,
                 max_chars: int = DEFAULT_MAX_CHARS, cite_constraint: bool = True, attribute: bool = True
                 ) -> tuple["Rag | None", Any, dict[str, Any] | None]:
    """(rag, checker, record) for eval/compare: `kb` retrieves (and checks unless `check_kb` is given),
    `check_kb` alone checks citations without retrieval. All None when neither is given."""
    if kb is None and check_kb is None:
        return None, None, None
    checker = open_checker(check_kb) if check_kb is not None else None
    rag = (Rag.open(kb, k=k, max_chars=max_chars, cite_constraint=cite_constraint, attribute=attribute)
           if kb is not None else None)
    if rag is not None and checker is not None:
        rag.checker = checker
    record: dict[str, Any] = rag.record() if rag is not None else {"path": None}
    if check_kb is not None:
        from lawtune.fsutil import sha256_file

        path = Path(check_kb)
        record["check"] = {"path": str(check_kb), "sha256": sha256_file(path) if path.is_file() else None}
    return rag, checker or (rag.checker if rag else None), record
