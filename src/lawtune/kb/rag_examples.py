"""Training examples in the RAG format, so a tuned model learns to cite what it is given and to say when it does not fit.

    lawtune prepare data/article_cited/legal_counsel_with_article_v2.json -o out/rag --kb kb.sqlite --rag-share 0.5
    from lawtune.kb.rag_examples import rag_training_file
    stats = rag_training_file("out/rag/train.jsonl", rag, share=0.5, seed=0)

A `share` of the lines of a conversations JSONL file (picked by a hash of the question and `seed`, so the same
lines every time) are candidates. A candidate needs gold articles, or it is left as it is (nothing says whether
retrieved material fits it): the articles its line's `meta.laws` names ("《民法典》第N条：…", as lawyer-llama's
article-cited data carry them) and those its reference answer cites, looked up in the KB (current numbering,
`lawtune.kb.grounding.ArticleKeys`). Then, as at inference:
1. the k articles are retrieved for the question for real (`Rag.retrieve`);
2. if a gold article is among them: kept as retrieved (`retrieved`); if none is, then for `1 - no_gold_share` of
   such lines one gold article replaces a retrieved one at a random rank (`injected`), and for the others the
   material stays without gold (`left_out`);
3. the question is put in the RAG format by `lawtune.kb.rag.rag_conversation` (instruction in the system turn);
4. the target answer cites only articles in the prompt: any other cited article is replaced by 相关法律规定
   (the law named alone is kept); with no gold in the prompt it also opens with `NO_FIT`, so the model learns to
   say plainly that the material does not fit, then answer without an article citation.
Each rewritten line records `meta.rag` (`case`, `gold`, `removed` citations). Only the training split is
rewritten: eval adds the articles itself with `--kb`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

from lawtune.data.conversations import Example, read_examples
from lawtune.errors import LawtuneError
from lawtune.kb.grounding import ArticleKeys, Key, hit_key
from lawtune.kb.numerals import to_int
from lawtune.kb.rag import Rag, rag_conversation
from lawtune.kb.store import Hit, Item
from lawtune.kb.wording import NO_FIT

GOLD_RE = re.compile(r"^\s*《([^》]+)》第([零〇一二三四五六七八九十百千两\d]+)条(?:之([一二三四五六七八九十\d]+))?")
REMOVED = "相关法律规定"  # what stands where an article outside the prompt was cited


def gold_hits(rag: Rag, laws: list[str], reference: str = "", keys: ArticleKeys | None = None) -> list[Hit]:
    """The gold articles the KB holds (current versions), as exact hits: `meta.laws` first, then those the
    reference answer cites (with `keys`)."""
    wanted: list[tuple[str, int, int]] = []
    for entry in laws:
        match = GOLD_RE.match(entry) if isinstance(entry, str) else None
        if match:
            wanted.append((match.group(1), to_int(match.group(2)), to_int(match.group(3)) if match.group(3) else 0))
    if keys is not None and reference:
        wanted += keys.cited(reference)
    hits: list[Hit] = []
    for law, article, sub in wanted:
        item = rag.store.lookup(law, article, sub)
        if item is not None and item.current and all(h.item != item for h in hits):
            hits.append(Hit(item, 0.0, exact=True))
    return hits


def _unit(question: str, seed: int, salt: str) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{question}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def grounded_answer(answer: str, keys: ArticleKeys, given: set[Key], items: dict[Key, Item]) -> tuple[str, int]:
    """(answer citing only articles in `given`, how many cited articles were taken out). A citation group
    (《民法典》第一千零七十九条、第一千零八十条) keeps its given articles; with none left it becomes REMOVED."""
    groups: dict[tuple[int, int], list] = {}
    for citation in keys.checker.citations(answer):
        groups.setdefault((citation.start, citation.start + len(citation.text)), []).append(citation)
    out, pos, removed = [], 0, 0
    for (start, end), citations in sorted(groups.items()):
        found = [keys.key(c) for c in citations]
        if start < pos or all(k is None or k in given for k in found):
            continue  # a law named alone, or every article given: unchanged
        kept = list(dict.fromkeys(k for k in found if k in given))
        removed += sum(k is not None and k not in given for k in dict.fromkeys(found))
        if kept:
            replacement = "、".join(items[k].cite() for k in kept)
        else:
            replacement = REMOVED
            if answer.startswith("等", end):  # "第N条等相关法律规定" → "相关法律规定"
                end += 1 + (len(REMOVED) if answer.startswith(REMOVED, end + 1) else 0)
            elif answer.startswith("的规定", end) or answer.startswith("规定", end):
                replacement = "相关法律"  # "第N条的规定" → "相关法律的规定"
        out += [answer[pos:start], replacement]
        pos = end
    return "".join(out + [answer[pos:]]), removed


def rag_example(rag: Rag, example: Example, keys: ArticleKeys, *, inject: bool, rng: random.Random) -> tuple[Example, dict[str, Any]] | None:
    """One conversation in the RAG format with a grounded target answer, or None when it has no gold article."""
    messages = example.messages
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    answer_at = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    gold = gold_hits(rag, example.meta.get("laws") or [], messages[answer_at]["content"], keys)
    if not gold:
        return None
    gold_keys = {hit_key(h) for h in gold}
    hits = rag.retrieve(messages[last_user]["content"])
    if any(hit_key(h) in gold_keys for h in hits):
        case = "retrieved"
    elif inject and hits:
        case = "injected"
        hits = list(hits)
        hits[rng.randrange(len(hits))] = rng.choice(gold)
    else:
        case = "left_out"
    given = {hit_key(h): h.item for h in hits if h.item.kind == "article"}
    text, removed = grounded_answer(messages[answer_at]["content"], keys, set(given), given)
    if case == "left_out":
        text = f"{NO_FIT}{text}"
    turns = rag_conversation(messages[:answer_at], hits, rag.max_chars)
    turns.append({"role": "assistant", "content": text})
    info = {"case": case, "gold": sum(hit_key(h) in gold_keys for h in hits), "removed": removed}
    return Example(turns, {**example.meta, "rag": info}), info


def rag_training_file(path: str | Path, rag: Rag, share: float = 0.5, seed: int = 0,
                      no_gold_share: float = 0.5) -> dict[str, Any]:
    """Rewrite the candidate lines of the file in the RAG format (atomically); returns counts for report.json."""
    if not 0 < share <= 1 or not 0 <= no_gold_share <= 1:
        raise LawtuneError(f"--rag-share must be in (0, 1] (got {share}); --rag-no-gold in [0, 1] (got {no_gold_share})")
    path = Path(path)
    keys = ArticleKeys(rag.checker, rag.store)
    stats: dict[str, Any] = {"lines": 0, "candidates": 0, "rewritten": 0, "no_gold_known": 0, "retrieved": 0,
                             "injected": 0, "left_out": 0, "citations_removed": 0, "share": share,
                             "no_gold_share": no_gold_share, "k": rag.k, "max_chars": rag.max_chars, "kb": rag.location}
    tmp = path.with_name(f".{path.name}.rag.tmp")
    # the training questions are in the KB's question memory (retriever_pairs.jsonl holds the same Q&A): searched
    # with it, a line's own entry votes for its gold article (884 of 893 retrieved in the demo, 572 without), and
    # the model would hardly ever see material without the gold — it would learn to quote whatever it is given
    retriever, saved = rag.retriever, rag.retriever.memory_weight
    retriever.memory_weight = 0.0
    try:
        _rewrite(path, tmp, rag, keys, stats, share, seed, no_gold_share)
    finally:
        retriever.memory_weight = saved
    os.replace(tmp, path)
    return stats


def _rewrite(path: Path, tmp: Path, rag: Rag, keys: ArticleKeys, stats: dict[str, Any], share: float, seed: int,
             no_gold_share: float) -> None:
    with open(tmp, "w", encoding="utf-8") as target:
        for example in read_examples(path):
            stats["lines"] += 1
            question = example.question
            if _unit(question, seed, "rag") < share:
                stats["candidates"] += 1
                rng = random.Random(_unit(question, seed, "order"))
                made = rag_example(rag, example, keys, inject=_unit(question, seed, "gold") >= no_gold_share, rng=rng)
                if made is None:
                    stats["no_gold_known"] += 1
                else:
                    example, info = made
                    stats["rewritten"] += 1
                    stats[info["case"]] += 1
                    stats["citations_removed"] += info["removed"]
            target.write(json.dumps(example.record(), ensure_ascii=False) + "\n")
