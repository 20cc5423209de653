"""The dense index a KB keeps beside its full-text index: every current article as a learned vector.

    train_dense(store)               # kb build: train the encoder on this KB's articles, encode them, store both
    refresh_dense(store)             # kb add: encode new current articles with the stored encoder
    index = load_dense(store)        # None for a KB without one
    query = index.query_vector("公司不给交社保怎么办")
    index.top(query, 100)            # [(key, cosine), ...] best first; key = (law_full, article, sub)
    index.cosines(query, keys)       # the cosine of given articles (0.0 for one not in the index)
    index.votes(query, 10, 3.0)      # {key: vote}: the articles of the training questions nearest the question

Retrieval fuses these cosines with the BM25 scores (retrieval.py, step 8). Beside the articles the index keeps
a **question memory**: the vectors of the real training questions (training_pairs.question_pairs) with the keys
of their articles. A question's nearest training questions vote for their articles (`votes`): a layperson's
question is usually closer to another layperson's question than to the statute's text, and the memory reaches
articles whose own vector the question does not come near. The encoder, the vectors and the memory are one
blob (`DENSE_BLOB`) in the store, written in the same transaction as the items for `kb add`, replaced whole by
`kb build`. The encoder is an ensemble: `encoder.ENSEMBLE` (3) encoders trained on the same pairs with seeds 0, 1,
2, stacked so that a cosine is the mean of theirs (`NgramEncoder.stack`) — one training's seed alone moves recall@5
by up to 0.02, and the mean of three beats the mean single one by about 0.01 (docs/knowledge-base.md, "Session
36"). Training is deterministic and costs about a minute per encoder for all of LawRefBook on a 2-core CPU;
each trained encoder is cached by a hash of everything it was trained on and its seed (`$LAWTUNE_HOME/kb-encoders/`,
default `~/.cache/lawtune`), so building the same KB again (the tests do, for each backend) does not train again.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from lawtune.kb import encoder as encoder_settings
from lawtune.kb.encoder import NgramEncoder, train_encoder
from lawtune.kb import lawstage
from lawtune.kb.lawstage import LawModel, train_law_model
from lawtune.kb.names import LawNames
from lawtune.kb.store import Item
from lawtune.kb.training_pairs import question_pairs, training_pairs

DENSE_BLOB = "dense"
CACHE_VERSION = "3"  # bump when training changes in a way the settings below do not show
Key = tuple[str, int, int]


def article_text(item: Item) -> str:
    """What the encoder reads of an article: law name, heading path and text, as BM25 does."""
    return f"{item.law} {item.path or ''} {item.text}"


class DenseIndex:
    def __init__(self, encoder: NgramEncoder, keys: list[Key], versions: list[str], vectors: np.ndarray,
                 memory: np.ndarray | None = None, memory_keys: list[list[Key]] | None = None,
                 law_model: LawModel | None = None):
        self.encoder = encoder
        self.keys = keys
        self.versions = versions  # the version each key's vector was made from (kb add re-encodes a new one)
        self.vectors = vectors.astype(np.float32)  # (n, dim), unit rows
        self.row = {key: n for n, key in enumerate(keys)}
        # the question memory: one unit row per training question, and the keys of the articles it was asked about
        self.memory = (np.zeros((0, encoder.dim), np.float32) if memory is None else memory.astype(np.float32))
        self.memory_keys = memory_keys or []
        self.law_model = law_model  # the law stage (lawstage.py); None: a KB built before it

    def query_vector(self, query: str) -> np.ndarray:
        return self.encoder.encode([query], query=True)[0]

    def top(self, query: np.ndarray, k: int) -> list[tuple[Key, float]]:
        if not self.keys or not query.any():
            return []
        scores = self.vectors @ query
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.keys[n], float(scores[n])) for n in best]

    def cosines(self, query: np.ndarray, keys: list[Key]) -> list[float]:
        rows = [self.row.get(key) for key in keys]
        known = [r for r in rows if r is not None]
        scores = iter((self.vectors[known] @ query).tolist()) if known else iter(())
        return [next(scores) if r is not None else 0.0 for r in rows]

    def votes(self, query: np.ndarray, neighbours: int, power: float, floor: float = 0.0) -> dict[Key, float]:
        """The articles of the `neighbours` training questions nearest the query, each voted for with
        cosine ** power, shared among that question's articles (a power above 1 lets only close questions count;
        a question less similar than `floor` does not vote)."""
        if not len(self.memory) or not query.any():
            return {}
        sims = self.memory @ query
        n = min(neighbours, len(sims))
        out: dict[Key, float] = {}
        for row in np.argpartition(-sims, n - 1)[:n]:
            if sims[row] > max(floor, 0.0):
                share = float(sims[row]) ** power / len(self.memory_keys[row])
                for key in self.memory_keys[row]:
                    out[key] = out.get(key, 0.0) + share
        return out

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        laws = self.law_model.laws if self.law_model is not None else None
        meta = json.dumps({"keys": self.keys, "versions": self.versions, "memory_keys": self.memory_keys,
                           "laws": laws}, ensure_ascii=False).encode()
        np.savez(buffer, encoder=np.frombuffer(self.encoder.to_bytes(), dtype=np.uint8),
                 meta=np.frombuffer(meta, dtype=np.uint8), vectors=self.vectors.astype(np.float16),
                 memory=self.memory.astype(np.float16),
                 **(self.law_model.arrays() if self.law_model is not None else {}))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "DenseIndex":
        with np.load(io.BytesIO(data)) as arrays:
            meta = json.loads(arrays["meta"].tobytes().decode())
            encoder = NgramEncoder.from_bytes(arrays["encoder"].tobytes())
            memory = arrays["memory"] if "memory" in arrays.files else None
            memory_keys = [[tuple(k) for k in keys] for keys in meta.get("memory_keys", [])]
            law_model = (LawModel(meta["laws"], arrays["law_weight"], arrays["law_bias"])
                         if meta.get("laws") is not None and "law_weight" in arrays.files else None)
            return cls(encoder, [tuple(k) for k in meta["keys"]], meta["versions"], arrays["vectors"], memory,
                       memory_keys, law_model)


def load_dense(store) -> DenseIndex | None:
    data = store.get_blob(DENSE_BLOB)
    return DenseIndex.from_bytes(data) if data else None


def train_dense(store, progress=None, cache: bool = True, phases: dict[str, float] | None = None) -> DenseIndex:
    """Train an encoder on the store's current articles and the shipped questions, encode every current article,
    and store both (one blob). `progress(step, steps)` follows the training; `phases`, when given, receives the
    seconds (wall) of each phase: pairs, training (0 when the cache had the encoder), encoding, law stage (when
    lawstage.TRAIN), storing."""
    phases = {} if phases is None else phases
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = phases.get(name, 0.0) + now - clock
        clock = now

    articles = store.current_articles()
    catalog = store.catalog()
    names = LawNames([*catalog.versions, *catalog.repealed])
    texts = [article_text(a) for a in articles]
    pairs = training_pairs(articles, names)
    lap("pairs")
    article_bags: list = []
    members = []
    seeds = range(encoder_settings.ENSEMBLE)
    for seed in seeds:
        member = _cached_encoder(texts, pairs, seed) if cache else None
        if member is None:
            member = train_encoder(texts, pairs, seed=seed, article_bags=article_bags if not article_bags else None,
                                   article_groups=[a.law_full for a in articles],
                                   progress=_member_progress(progress, seed, len(seeds)))
            if cache:
                _store_cached(texts, pairs, seed, member)
        members.append(member)
    encoder = members[0] if len(members) == 1 else NgramEncoder.stack(members)
    lap("training")
    # training tokenized the articles already: encode from those bags rather than reading every text again
    vectors = encoder.encode_bags(article_bags[0]) if article_bags else encoder.encode(texts)
    asked = question_pairs(articles, names)
    memory = encoder.encode([q for q, _ in asked], query=True) if asked else None
    lap("encoding")
    law_model = None
    if lawstage.TRAIN:
        law_model = train_law_model(encoder, pairs, [a.law_full for a in articles])
        lap("law stage")
    index = DenseIndex(encoder, [_key(a) for a in articles], [a.version or "" for a in articles], vectors,
                       memory, [[_key(articles[g]) for g in golds] for _, golds in asked], law_model)
    store.put_blob(DENSE_BLOB, index.to_bytes())
    lap("storing")
    return index


def refresh_dense(store) -> None:
    """After `kb add`: vectors for current articles the index lacks (or holds in an older version), none for
    articles that stopped being current. The encoder stays as `kb build` trained it."""
    index = load_dense(store)
    if index is None:
        return
    articles = store.current_articles()
    keep, new = [], []
    for article in articles:
        row = index.row.get(_key(article))
        if row is not None and index.versions[row] == (article.version or ""):
            keep.append((article, index.vectors[row]))
        else:
            new.append(article)
    if not new and len(keep) == len(index.keys):
        return
    vectors = index.encoder.encode([article_text(a) for a in new])
    rows = keep + list(zip(new, vectors))
    updated = DenseIndex(index.encoder, [_key(a) for a, _ in rows], [a.version or "" for a, _ in rows],
                         np.stack([v for _, v in rows]) if rows else np.zeros((0, index.encoder.dim), np.float32),
                         index.memory, index.memory_keys,  # the memory's votes for an article gone find no item
                         index.law_model)  # a law kb add brings has no row: probability 0
    store.put_blob(DENSE_BLOB, updated.to_bytes())


def _key(item: Item) -> Key:
    return (item.law_full, item.article, item.sub)


def _member_progress(progress, member: int, members: int):
    """One progress over all the ensemble's trainings: member n's step s of S is step n·S + s of members·S."""
    if progress is None:
        return None
    return lambda step, steps: progress(member * steps + step, members * steps)


def _fingerprint(texts: list[str], pairs: list, seed: int = 0) -> str:
    settings = [getattr(encoder_settings, name) for name in ("DIM", "TAU", "BATCH", "LEARNING_RATE", "EPOCHS",
                                                             "MAX_STEPS", "MIN_COUNT", "HARD_NEGATIVES", "NEIGHBOURS",
                                                             "QUERY_SIDE")]
    # seed 0 keeps the key it had before ensembles, so encoders cached then are found
    digest = hashlib.sha256(f"{CACHE_VERSION} {settings}{f' seed {seed}' if seed else ''}".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\x00")
    for question, golds in pairs:
        digest.update(question.encode("utf-8", "surrogatepass") + repr(golds).encode() + b"\x00")
    return digest.hexdigest()[:32]


def _cache_dir() -> Path:
    from lawtune.modeling.runs import lawtune_home

    return lawtune_home() / "kb-encoders"


def _cached_encoder(texts: list[str], pairs: list, seed: int = 0) -> NgramEncoder | None:
    path = _cache_dir() / f"{_fingerprint(texts, pairs, seed)}.npz"
    try:
        return NgramEncoder.from_bytes(path.read_bytes())
    except (OSError, ValueError, KeyError):
        return None


def _store_cached(texts: list[str], pairs: list, seed: int, encoder: NgramEncoder) -> None:
    from lawtune.fsutil import atomic_open

    try:
        with atomic_open(_cache_dir() / f"{_fingerprint(texts, pairs, seed)}.npz", "wb") as handle:
            handle.write(encoder.to_bytes())
    except OSError as error:  # a read-only home: the KB is still built, the next build trains again
        print(f"note: could not cache the trained encoder ({error})", file=sys.stderr)
