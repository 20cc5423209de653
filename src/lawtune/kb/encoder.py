"""The learned half of retrieval: static n-gram embeddings trained on question → article pairs.

    encoder = train_encoder(article_texts, pairs, seed=0)   # pairs: (question, [index into article_texts, ...])
    vectors = encoder.encode(["公司不给交社保怎么办"])          # (n, DIM) float32, unit length
    NgramEncoder.from_bytes(encoder.to_bytes())              # stored inside the KB (dense.py)
    NgramEncoder.stack([first, second, third])               # an ensemble: the mean of their cosines (kb build)

Why this kind of model: BM25 over character bigrams cannot bridge a layperson's words to the statute's
(老公 / 配偶, 辞退 / 解除劳动合同, 赔多少 / 经济补偿), which is where real questions fail (docs/knowledge-base.md,
"Real questions"). A static embedding — one learned vector per character and character bigram, a text = the
idf-weighted sum of its vectors — learns those associations from pairs, runs on a 2-core CPU without a
transformer (a query is a few hundred vector additions; all of LawRefBook's current articles are encoded in
seconds), and is trained by `kb build` itself in a minute or two, so it fits whatever laws the KB holds. Where a
GPU is available a fine-tuned transformer encoder (e.g. bge-m3 / multilingual-e5 fine-tuned on the same pairs)
would do better; the interface (`encode`) would stay the same.

Training: contrastive (InfoNCE) with in-batch negatives, symmetric loss, temperature `TAU`, Adam.
Deterministic for a given seed and input order.
"""

from __future__ import annotations

import io
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

DIM = 128
TAU = 0.05
BATCH = 256
LEARNING_RATE = 0.01
EPOCHS = 2.0
MAX_STEPS = 800  # caps training time on a big corpus (~all of LawRefBook: 2 epochs would be ~750 steps)
MIN_COUNT = 2  # tokens seen fewer times (in articles + questions) get no vector
ENSEMBLE = 3  # kb build trains this many encoders (seeds 0, 1, …) and stacks them: one training's seed moves recall@5 by up to 0.02
HARD_NEGATIVES = 0  # per question: a neighbouring article of the same law as an extra negative (0: in-batch only)
# the query side: "" one table for questions and articles; "residual" questions read table + a second table
# (initialised at zero) that only questions read, so lay words can move toward the statute's without dragging the
# statute words' own vectors; "separate" questions read a table of their own
QUERY_SIDE = ""
QUERY_SIDES = ("", "residual", "separate")
NEIGHBOURS = 5  # how far (in articles of the same law) a hard negative may sit from the gold

_RUN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[A-Za-z0-9]+")
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

Progress = Callable[[int, int], None]  # (step, steps)


def ngrams(text: str) -> list[str]:
    """Single CJK characters and character bigrams of each CJK run; Latin words and numbers whole, lower-cased."""
    out: list[str] = []
    for run in _RUN_RE.findall(text):
        if not _CJK_RE.match(run):
            out.append(run.lower())
            continue
        out.extend(run)
        out.extend(run[i:i + 2] for i in range(len(run) - 1))
    return out


class NgramEncoder:
    def __init__(self, vocab: list[str], idf: np.ndarray, weights: np.ndarray, query_weights: np.ndarray | None = None,
                 blocks: int = 1):
        self.vocab = vocab
        self.index = {token: n for n, token in enumerate(vocab)}
        self.idf = idf.astype(np.float32)
        self.weights = weights.astype(np.float16)  # (len(vocab), dim): half the memory, cast per lookup
        # the questions' table when training gave them their own (QUERY_SIDE); None: questions read `weights`
        self.query_weights = None if query_weights is None else query_weights.astype(np.float16)
        self.dim = weights.shape[1]
        # an ensemble (`stack`): `blocks` encoders' tables side by side; a text's vector is their unit vectors
        # side by side ÷ √blocks, so a dot product of two vectors is the mean of the members' cosines
        self.blocks = blocks

    @classmethod
    def stack(cls, members: Sequence["NgramEncoder"]) -> "NgramEncoder":
        """One encoder that reads as the mean of several trained on the same texts (e.g. with different seeds):
        seed noise averages out. The members must share the vocabulary (the same texts and pairs give it)."""
        first = members[0]
        if any(m.vocab != first.vocab or m.blocks != 1 for m in members):
            raise ValueError("stack: the encoders must be single encoders over one vocabulary")
        sides = [m.query_weights for m in members]
        query = None if any(q is None for q in sides) else np.hstack(sides)
        return cls(first.vocab, first.idf, np.hstack([m.weights for m in members]), query, blocks=len(members))

    def _unit(self, vectors: np.ndarray) -> np.ndarray:
        """Each block of each row to unit length, ÷ √blocks (the whole row then has unit length)."""
        parts = vectors.reshape(len(vectors), self.blocks, -1)
        norms = np.linalg.norm(parts, axis=-1, keepdims=True)
        parts = np.divide(parts, norms, out=np.zeros_like(parts), where=norms > 0) / math.sqrt(self.blocks)
        return parts.reshape(len(vectors), self.dim).astype(np.float32)

    def _table(self, query: bool) -> np.ndarray:
        return self.query_weights if query and self.query_weights is not None else self.weights

    def bag(self, text: str) -> tuple[list[int], list[float]]:
        """Row ids and weights (idf × (1 + log tf)) of the text's known n-grams."""
        counts = Counter(self.index[t] for t in ngrams(text) if t in self.index)
        rows = list(counts)
        return rows, [float(self.idf[r]) * (1.0 + math.log(n)) for r, n in counts.items()]

    def encode(self, texts: Sequence[str], query: bool = False) -> np.ndarray:
        """Unit vectors of articles, or with `query` of questions (the query side's table, when there is one)."""
        if len(texts) > 1:  # many texts: one weighted sum per text over the whole table at once
            return self.encode_bags(_bags_of(texts, self.index, self.idf), query=query)
        table = self._table(query)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for n, text in enumerate(texts):
            rows, weights = self.bag(text)
            if rows:
                vector = np.asarray(weights, dtype=np.float32) @ table[rows].astype(np.float32)
                norm = float(np.linalg.norm(vector))
                out[n] = vector / norm if norm > 0 else vector
        return out if self.blocks == 1 else self._unit(out)

    def encode_bags(self, bags: "Bags", chunk: int = 4096, query: bool = False) -> np.ndarray:
        import torch

        table = torch.from_numpy(self._table(query).astype(np.float32))
        out = np.zeros((len(bags), self.dim), dtype=np.float32)
        for start in range(0, len(bags), chunk):
            rows, weights, offsets = bags.batch(range(start, min(start + chunk, len(bags))))
            if not len(rows):
                continue
            vectors = torch.nn.functional.embedding_bag(torch.from_numpy(rows), table, torch.from_numpy(offsets),
                                                        mode="sum", per_sample_weights=torch.from_numpy(weights))
            out[start:start + len(offsets)] = (torch.nn.functional.normalize(vectors, dim=-1).numpy()
                                               if self.blocks == 1 else self._unit(vectors.numpy()))
        return out

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, idf=self.idf, weights=self.weights,
                 vocab=np.frombuffer(json.dumps(self.vocab, ensure_ascii=False).encode(), dtype=np.uint8),
                 **({"query_weights": self.query_weights} if self.query_weights is not None else {}),
                 **({"blocks": np.array(self.blocks)} if self.blocks != 1 else {}))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "NgramEncoder":
        with np.load(io.BytesIO(data)) as arrays:
            vocab = json.loads(arrays["vocab"].tobytes().decode())
            query = arrays["query_weights"] if "query_weights" in arrays.files else None
            blocks = int(arrays["blocks"]) if "blocks" in arrays.files else 1
            return cls(vocab, arrays["idf"], arrays["weights"], query, blocks)


class Bags:
    """Many texts as (row, weight) bags in flat arrays: text n is rows[starts[n]:starts[n + 1]]."""

    def __init__(self, rows: np.ndarray, weights: np.ndarray, starts: np.ndarray):
        self.rows, self.weights, self.starts = rows, weights, starts

    def __len__(self) -> int:
        return len(self.starts) - 1

    def size(self, n: int) -> int:
        return int(self.starts[n + 1] - self.starts[n])

    def head(self, n: int) -> "Bags":
        """The first n texts."""
        end = self.starts[n]
        return Bags(self.rows[:end], self.weights[:end], self.starts[:n + 1])

    def batch(self, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, weights and offsets of these texts, as `embedding_bag` takes them."""
        pieces = [slice(self.starts[n], self.starts[n + 1]) for n in ids]
        sizes = np.array([p.stop - p.start for p in pieces], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        rows = np.concatenate([self.rows[p] for p in pieces]) if pieces else np.zeros(0, np.int64)
        weights = np.concatenate([self.weights[p] for p in pieces]) if pieces else np.zeros(0, np.float32)
        return rows, weights, offsets


class _Counted:
    """Texts as (token id, count) lists over a token table grown while reading: n-grams computed once."""

    def __init__(self, token_ids: dict[str, int], ids: np.ndarray, counts: np.ndarray, starts: np.ndarray):
        self.token_ids, self.ids, self.counts, self.starts = token_ids, ids, counts, starts

    @classmethod
    def of(cls, texts: Sequence[str], token_ids: dict[str, int] | None = None) -> "_Counted":
        token_ids = {} if token_ids is None else token_ids
        ids: list[int] = []
        counts: list[int] = []
        starts = [0]
        for text in texts:
            counted = Counter(ngrams(text))
            ids.extend(token_ids.setdefault(t, len(token_ids)) for t in counted)
            counts.extend(counted.values())
            starts.append(len(ids))
        return cls(token_ids, np.array(ids, dtype=np.int64), np.array(counts, dtype=np.float32),
                   np.array(starts, dtype=np.int64))

    def bags(self, to_row: np.ndarray, idf: np.ndarray) -> Bags:
        """Map token ids to vocabulary rows (-1: no row, dropped) and weigh them idf × (1 + log tf)."""
        rows = to_row[self.ids]
        keep = rows >= 0
        weights = (idf[np.maximum(rows, 0)] if len(idf) else np.zeros(len(rows), np.float32)) * (1.0 + np.log(self.counts))
        weights = weights.astype(np.float32)
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        return Bags(rows[keep], weights[keep], kept_before[self.starts])


def _bags_of(texts: Sequence[str], index: dict[str, int], idf: np.ndarray) -> Bags:
    counted = _Counted.of(texts)
    to_row = np.full(len(counted.token_ids), -1, dtype=np.int64)
    for token, n in counted.token_ids.items():
        to_row[n] = index.get(token, -1)
    return counted.bags(to_row, idf)


def build_vocab(article_texts: Sequence[str], questions: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Tokens seen at least MIN_COUNT times (each text counts a token once), in a deterministic order, with
    their idf over the articles."""
    vocab, idf, _, _ = _vocab_and_bags(article_texts, questions)
    return vocab, idf


def _vocab_and_bags(article_texts: Sequence[str], questions: Sequence[str], repeats: Sequence[int] | None = None,
                    extra_texts: Sequence[str] = ()) -> tuple[list[str], np.ndarray, Bags, Bags]:
    """The vocabulary (see build_vocab) and the texts' bags over it, each text's n-grams computed once;
    `repeats[n]`: how many times question n counts (a question given several times is seen as often).
    `extra_texts` (training targets that are not articles, e.g. answers) follow the articles in the first bags;
    their n-grams count toward MIN_COUNT, not toward the idf (which stays the articles')."""
    articles = _Counted.of([*article_texts, *extra_texts])
    asked = _Counted.of(questions, articles.token_ids)  # one token table for both
    table = articles.token_ids
    split = articles.starts[len(article_texts)]  # the extra texts' entries start here
    doc_freq = np.bincount(articles.ids[:split], minlength=len(table))
    seen_extra = np.bincount(articles.ids[split:], minlength=len(table))
    per_entry = np.repeat(np.asarray(repeats if repeats is not None else [1] * len(questions), dtype=np.float64),
                          np.diff(asked.starts))
    seen = doc_freq + seen_extra + np.bincount(asked.ids, weights=per_entry, minlength=len(table))
    tokens = list(table)  # table order: token id n is tokens[n]
    vocab = sorted(t for t, n in zip(tokens, seen.tolist()) if n >= MIN_COUNT)
    row_of = {t: n for n, t in enumerate(vocab)}
    to_row = np.array([row_of.get(t, -1) for t in tokens], dtype=np.int64)
    total = len(article_texts)
    kept = to_row >= 0
    idf = np.zeros(len(vocab), dtype=np.float32)
    idf[to_row[kept]] = np.log(1.0 + total / (1.0 + doc_freq[kept]))
    return vocab, idf, articles.bags(to_row, idf), asked.bags(to_row, idf)


def train_encoder(article_texts: Sequence[str], pairs: Sequence[tuple[str, Sequence[int]]], *, dim: int | None = None,
                  seed: int = 0, epochs: float | None = None, max_steps: int | None = None,
                  progress: Progress | None = None, article_bags: list | None = None,
                  article_groups: Sequence[object] | None = None,
                  text_pairs: Sequence[tuple[str, str]] = (),
                  negatives: dict[str, Sequence[int]] | None = None) -> NgramEncoder:
    """Train the n-gram vectors so that each question's vector is nearest its articles' (in-batch negatives).

    Each text's n-grams are computed once (`_vocab_and_bags`). A step embeds its batch from the rows it
    touches only and updates only those rows (Adam with per-row moments, "lazy" Adam: rows a step does not
    touch keep their moments), so a step costs the batch, not the 150k-row table. `article_bags`, when given,
    receives the articles' bags (encoding them again after training needs no second tokenization).
    `article_groups` (e.g. each article's law, articles in reading order): with HARD_NEGATIVES, each question
    also meets up to that many articles of its gold's group within NEIGHBOURS places of it — the neighbouring
    articles on the same topic that random in-batch negatives almost never are. `text_pairs` (question, text):
    targets that are not articles — e.g. a consultation's answer, written in the statute's words — pulled toward
    their question like an article (and serving as in-batch negatives for the others); they shape the vectors
    only and are not encoded afterwards. `negatives` (question → articles that are wrong for it, e.g. the articles
    of a similar training question that asked something else): one of them, at random, joins the question's batch
    as an extra negative (not when it is a gold of that batch)."""
    import torch

    # the module's settings as they are now (dense.py's cache key reads them the same way)
    dim = DIM if dim is None else dim
    epochs = EPOCHS if epochs is None else epochs
    max_steps = MAX_STEPS if max_steps is None else max_steps
    threads = torch.get_num_threads()
    # one thread: a step is many small ops, which a second OpenMP thread slows down (measured on the bundled laws,
    # 2 busy cores: 2.7 s with one thread, 11–23 s with two)
    torch.set_num_threads(1)
    try:
        return _train(article_texts, pairs, dim, seed, epochs, max_steps, progress, article_bags, article_groups,
                      text_pairs, negatives or {})
    finally:
        torch.set_num_threads(threads)


def _train(article_texts, pairs, dim, seed, epochs, max_steps, progress, article_bags, article_groups,
           text_pairs, negatives) -> NgramEncoder:
    import torch

    pairs = [(q, list(golds)) for q, golds in pairs if golds]
    # a text target is document len(article_texts) + n: the texts follow the articles in the documents' bags
    extra_texts = list(dict.fromkeys(text for _, text in text_pairs))
    extra_row = {text: len(article_texts) + n for n, text in enumerate(extra_texts)}
    pairs += [(q, [extra_row[text]]) for q, text in text_pairs]
    repeats = Counter(q for q, _ in pairs)
    unique_questions = list(repeats)
    question_row = {q: n for n, q in enumerate(unique_questions)}
    vocab, idf, doc_bags, question_bags = _vocab_and_bags(article_texts, unique_questions,
                                                          [repeats[q] for q in unique_questions], extra_texts)
    if article_bags is not None:
        article_bags.append(doc_bags.head(len(article_texts)))
    pair_question = [question_row[q] for q, _ in pairs]
    wrong = {question_row[q]: list(found) for q, found in negatives.items() if q in question_row and found}
    if QUERY_SIDE not in QUERY_SIDES:
        raise ValueError(f"QUERY_SIDE {QUERY_SIDE!r}: one of {QUERY_SIDES}")
    generator = torch.Generator().manual_seed(seed)
    table = torch.empty(len(vocab), dim).normal_(0.0, 0.1, generator=generator)
    size = len(vocab)
    if QUERY_SIDE:
        # the query side's rows sit after the articles' in one table (rows size … 2·size − 1), so the lazy update
        # below treats both alike; a residual starts at zero (questions start as the shared model)
        extra = (torch.zeros(size, dim) if QUERY_SIDE == "residual"
                 else torch.empty(size, dim).normal_(0.0, 0.1, generator=generator))
        table = torch.cat([table, extra])
    moment1 = torch.zeros_like(table)
    moment2 = torch.zeros_like(table)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    present = np.zeros(len(table), dtype=bool)
    place = np.zeros(len(table), dtype=np.int64)

    rng = random.Random(seed)
    negative_rng = random.Random(seed + 1)  # its own stream: the batches stay the same with or without
    steps = max(1, min(max_steps, math.ceil(epochs * len(pairs) / BATCH))) if pairs else 0
    for step in range(steps):
        questions, docs, chosen = [], [], set()
        for n in rng.sample(range(len(pairs)), min(BATCH, len(pairs))):
            gold = rng.choice(pairs[n][1])
            if gold in chosen or not question_bags.size(pair_question[n]) or not doc_bags.size(gold):
                continue  # one question per article in a batch: a second one would be a false negative
            chosen.add(gold)
            questions.append(pair_question[n])
            docs.append(gold)
        if len(questions) < 2:
            continue
        if HARD_NEGATIVES and article_groups is not None:
            docs = docs + _neighbours(docs, chosen, article_groups, doc_bags, negative_rng)
        if wrong:
            taken = set(docs)
            for question in questions:
                if question in wrong:
                    other = negative_rng.choice(wrong[question])
                    if other not in taken and doc_bags.size(other):
                        docs.append(other)
                        taken.add(other)
        q_rows, q_weights, q_offsets = question_bags.batch(questions)
        q_rows, q_weights, q_offsets = _query_side(q_rows, q_weights, q_offsets, size)
        d_rows, d_weights, d_offsets = doc_bags.batch(docs)
        rows = np.concatenate([q_rows, d_rows])
        weights = torch.from_numpy(np.concatenate([q_weights, d_weights]))
        # the rows this batch touches, and each entry's place among them (no sort: a mark per vocabulary row)
        present[:] = False
        present[rows] = True
        touched_np = np.flatnonzero(present)
        place[touched_np] = np.arange(len(touched_np))
        local = torch.from_numpy(place[rows])
        sizes = np.diff(np.concatenate([q_offsets, len(q_rows) + d_offsets, [len(rows)]]))
        owner = torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes))  # each entry's text
        touched = torch.from_numpy(touched_np)
        sub = table[touched]
        # the texts' weighted sums; the gradient is taken by hand below (autograd's embedding_bag backward is
        # several times slower on a CPU)
        raw = torch.zeros(len(sizes), dim).index_add_(0, owner, sub[local] * weights[:, None]).requires_grad_()
        vectors = torch.nn.functional.normalize(raw, dim=-1)
        q_vectors, d_vectors = vectors[:len(questions)], vectors[len(questions):]
        logits = q_vectors @ d_vectors.T / TAU  # (questions, golds + hard negatives)
        labels = torch.arange(len(questions))
        loss = (torch.nn.functional.cross_entropy(logits, labels)
                + torch.nn.functional.cross_entropy(logits[:, :len(questions)].T, labels)) / 2
        loss.backward()
        with torch.no_grad():
            grad = torch.zeros_like(sub).index_add_(0, local, raw.grad[owner] * weights[:, None])
            m = moment1[touched].mul_(beta1).add_(grad, alpha=1 - beta1)
            v = moment2[touched].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            moment1[touched], moment2[touched] = m, v
            corrected1 = 1 - beta1 ** (step + 1)
            corrected2 = 1 - beta2 ** (step + 1)
            table[touched] = sub - LEARNING_RATE * (m / corrected1) / ((v / corrected2).sqrt_().add_(eps))
        if progress:
            progress(step + 1, steps)
    if QUERY_SIDE == "residual":
        return NgramEncoder(vocab, idf, table[:size].numpy(), (table[:size] + table[size:]).numpy())
    if QUERY_SIDE == "separate":
        return NgramEncoder(vocab, idf, table[:size].numpy(), table[size:].numpy())
    return NgramEncoder(vocab, idf, table.numpy())


def _query_side(rows: np.ndarray, weights: np.ndarray, offsets: np.ndarray, size: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The questions' bag entries as QUERY_SIDE reads them: the shared rows, the query rows (+ size) instead, or
    both (residual: each n-gram's shared row and its query row, with the same weight)."""
    if not QUERY_SIDE:
        return rows, weights, offsets
    if QUERY_SIDE == "separate":
        return rows + size, weights, offsets
    sizes = np.diff(np.concatenate([offsets, [len(rows)]]))
    owner = np.repeat(np.arange(len(sizes)), sizes)
    doubled_rows = np.concatenate([rows, rows + size])
    doubled_weights = np.concatenate([weights, weights])
    order = np.argsort(np.concatenate([owner, owner]), kind="stable")  # keep each question's entries together
    new_offsets = np.concatenate([[0], np.cumsum(2 * sizes)[:-1]]).astype(np.int64)
    return doubled_rows[order], doubled_weights[order], new_offsets


def _neighbours(golds: list[int], taken: set[int], groups: Sequence[object], bags: Bags,
                rng: random.Random) -> list[int]:
    """Up to HARD_NEGATIVES articles per gold from its group, within NEIGHBOURS places, not a gold of the batch."""
    out: list[int] = []
    seen = set(taken)
    offsets = [d for d in range(-NEIGHBOURS, NEIGHBOURS + 1) if d]
    for gold in golds:
        if gold >= len(groups):  # a text target (text_pairs), not an article: no neighbours
            continue
        found = 0
        for offset in rng.sample(offsets, len(offsets)):
            other = gold + offset
            if (0 <= other < len(groups) and other not in seen and groups[other] == groups[gold]
                    and bags.size(other)):
                out.append(other)
                seen.add(other)
                found += 1
                if found >= HARD_NEGATIVES:
                    break
    return out
