"""Training examples in the RAG format, so a tuned model learns to use the articles it is given.

    lawtune prepare data/article_cited/legal_counsel_with_article_v2.json -o out/rag --kb kb.sqlite --rag-share 0.5
    from lawtune.kb.rag_examples import rag_training_file
    stats = rag_training_file("out/rag/train.jsonl", rag, share=0.5, seed=0)

A `share` of the lines of a conversations JSONL file (picked by a hash of the question and `seed`, so the same
lines every time) get their last user turn rewritten with `lawtune.kb.rag.build_prompt` — the exact format of
`--kb` at inference. The articles: the gold ones named in the line's `meta.laws` ("《民法典》第N条：…", as
lawyer-llama's article-cited data carry them; at most k-1 of them, looked up in the KB) plus retrieved
distractors up to k, in a shuffled order; for `no_gold_share` of the rewritten lines the gold is left out (k
retrieved articles that do not include it), so the model also sees material it cannot simply copy. Lines
without `meta.laws` get the k retrieved articles, as at inference. The answer is never changed. Each rewritten
line records `meta.rag = {"gold": n, "distractors": m}`. Only the training split is rewritten: eval adds the
articles itself with `--kb`.
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
from lawtune.kb.numerals import to_int
from lawtune.kb.rag import Rag, build_prompt
from lawtune.kb.store import Hit

GOLD_RE = re.compile(r"^\s*《([^》]+)》第([零〇一二三四五六七八九十百千两\d]+)条(?:之([一二三四五六七八九十\d]+))?")


def gold_hits(rag: Rag, laws: list[str]) -> list[Hit]:
    """The articles `meta.laws` names that the KB holds (current versions), as exact hits, in order."""
    hits = []
    for entry in laws:
        match = GOLD_RE.match(entry) if isinstance(entry, str) else None
        if not match:
            continue
        item = rag.store.lookup(match.group(1), to_int(match.group(2)), to_int(match.group(3)) if match.group(3) else 0)
        if item is not None and all(h.item != item for h in hits):
            hits.append(Hit(item, 0.0, exact=True))
    return hits


def _unit(question: str, seed: int, salt: str) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{question}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def rag_messages(rag: Rag, messages: list[dict[str, str]], laws: list[str], *, with_gold: bool,
                 rng: random.Random) -> tuple[list[dict[str, str]], dict[str, int]]:
    """One conversation (ending with the assistant answer) with its last user turn in the RAG format."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    question = messages[last]["content"]
    gold = gold_hits(rag, laws)[:max(1, rag.k - 1)] if with_gold else []
    all_gold = {h.item for h in gold_hits(rag, laws)}
    pool = rag.store.search(question, k=rag.k + len(all_gold) + 3)
    distractors = [h for h in pool if h.item not in all_gold][:rag.k - len(gold)]
    hits = gold + distractors
    rng.shuffle(hits)
    out = [dict(m) for m in messages]
    out[last]["content"] = build_prompt(question, hits, rag.max_chars)
    return out, {"gold": len(gold), "distractors": len(distractors)}


def rag_training_file(path: str | Path, rag: Rag, share: float = 0.5, seed: int = 0,
                      no_gold_share: float = 0.25) -> dict[str, Any]:
    """Rewrite `share` of the file's lines in the RAG format (atomically); returns counts for report.json."""
    if not 0 < share <= 1 or not 0 <= no_gold_share <= 1:
        raise LawtuneError(f"--rag-share must be in (0, 1] (got {share}); the no-gold share in [0, 1] (got {no_gold_share})")
    path = Path(path)
    stats = {"lines": 0, "rewritten": 0, "with_gold": 0, "without_gold": 0, "share": share,
             "no_gold_share": no_gold_share, "k": rag.k, "max_chars": rag.max_chars, "kb": rag.location}
    tmp = path.with_name(f".{path.name}.rag.tmp")
    with open(tmp, "w", encoding="utf-8") as target:
        for example in read_examples(path):
            stats["lines"] += 1
            question = next(m["content"] for m in reversed(example.messages) if m["role"] == "user")
            if _unit(question, seed, "rag") < share:
                laws = example.meta.get("laws") or []
                with_gold = bool(laws) and _unit(question, seed, "gold") >= no_gold_share
                rng = random.Random(_unit(question, seed, "order"))
                turns, counts = rag_messages(rag, example.messages, laws, with_gold=with_gold, rng=rng)
                example = Example(turns, {**example.meta, "rag": counts})
                stats["rewritten"] += 1
                stats["with_gold" if counts["gold"] else "without_gold"] += 1
            target.write(json.dumps(example.record(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return stats
