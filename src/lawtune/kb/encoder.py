"""The learned half of retrieval: static n-gram embeddings trained on question → article pairs.

    encoder = train_encoder(article_texts, pairs, seed=0)   # pairs: (question, [index into article_texts, ...])
    vectors = encoder.encode(["公司不给交社保怎么办"])          # (n, DIM) float32, unit length
    NgramEncoder.from_bytes(encoder.to_bytes())              # stored inside the KB (dense.py)

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
    def __init__(self, vocab: list[str], idf: np.ndarray, weights: np.ndarray):
        self.vocab = vocab
        self.index = {token: n for n, token in enumerate(vocab)}
        self.idf = idf.astype(np.float32)
        self.weights = weights.astype(np.float16)  # (len(vocab), dim): half the memory, cast per lookup
        self.dim = weights.shape[1]

    def bag(self, text: str) -> tuple[list[int], list[float]]:
        """Row ids and weights (idf × (1 + log tf)) of the text's known n-grams."""
        counts = Counter(self.index[t] for t in ngrams(text) if t in self.index)
        rows = list(counts)
        return rows, [float(self.idf[r]) * (1.0 + math.log(n)) for r, n in counts.items()]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for n, text in enumerate(texts):
            rows, weights = self.bag(text)
            if rows:
                vector = np.asarray(weights, dtype=np.float32) @ self.weights[rows].astype(np.float32)
                norm = float(np.linalg.norm(vector))
                out[n] = vector / norm if norm > 0 else vector
        return out

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, idf=self.idf, weights=self.weights,
                 vocab=np.frombuffer(json.dumps(self.vocab, ensure_ascii=False).encode(), dtype=np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "NgramEncoder":
        with np.load(io.BytesIO(data)) as arrays:
            vocab = json.loads(arrays["vocab"].tobytes().decode())
            return cls(vocab, arrays["idf"], arrays["weights"])


def build_vocab(article_texts: Sequence[str], questions: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Tokens seen at least MIN_COUNT times (each text counts a token once), in a deterministic order, with
    their idf over the articles."""
    doc_freq: Counter = Counter()
    for text in article_texts:
        doc_freq.update(set(ngrams(text)))
    seen = Counter(doc_freq)
    for question in questions:
        seen.update(set(ngrams(question)))
    vocab = sorted(t for t, n in seen.items() if n >= MIN_COUNT)
    total = len(article_texts)
    idf = np.array([math.log(1.0 + total / (1.0 + doc_freq.get(t, 0))) for t in vocab], dtype=np.float32)
    return vocab, idf


def train_encoder(article_texts: Sequence[str], pairs: Sequence[tuple[str, Sequence[int]]], *, dim: int = DIM,
                  seed: int = 0, epochs: float = EPOCHS, max_steps: int = MAX_STEPS,
                  progress: Progress | None = None) -> NgramEncoder:
    """Train the n-gram vectors so that each question's vector is nearest its articles' (in-batch negatives)."""
    import torch

    pairs = [(q, list(golds)) for q, golds in pairs if golds]
    vocab, idf = build_vocab(article_texts, [q for q, _ in pairs])
    untrained = NgramEncoder(vocab, idf, np.zeros((len(vocab), dim), dtype=np.float32))
    generator = torch.Generator().manual_seed(seed)
    table = torch.nn.Embedding(len(vocab), dim)
    with torch.no_grad():
        table.weight.normal_(0.0, 0.1, generator=generator)
    # dense Adam: on a CPU its one pass over the table is ~10x faster than SparseAdam's coalescing per step
    optimizer = torch.optim.Adam(table.parameters(), lr=LEARNING_RATE)
    doc_bags: dict[int, tuple[list[int], list[float]]] = {}
    question_bags = [untrained.bag(q) for q, _ in pairs]

    def doc_bag(index: int) -> tuple[list[int], list[float]]:
        if index not in doc_bags:
            doc_bags[index] = untrained.bag(article_texts[index])
        return doc_bags[index]

    def embed(bags: list[tuple[list[int], list[float]]]) -> "torch.Tensor":
        rows = [r for bag in bags for r in bag[0]]
        weights = [w for bag in bags for w in bag[1]]
        offsets = np.cumsum([0] + [len(bag[0]) for bag in bags[:-1]]).tolist()
        vectors = torch.nn.functional.embedding_bag(
            torch.tensor(rows, dtype=torch.long), table.weight, torch.tensor(offsets, dtype=torch.long),
            mode="sum", per_sample_weights=torch.tensor(weights, dtype=torch.float32))
        return torch.nn.functional.normalize(vectors, dim=-1)

    rng = random.Random(seed)
    steps = max(1, min(max_steps, math.ceil(epochs * len(pairs) / BATCH))) if pairs else 0
    for step in range(steps):
        questions, docs, chosen = [], [], set()
        for n in rng.sample(range(len(pairs)), min(BATCH, len(pairs))):
            gold = rng.choice(pairs[n][1])
            if gold in chosen or not question_bags[n][0] or not doc_bag(gold)[0]:
                continue  # one question per article in a batch: a second one would be a false negative
            chosen.add(gold)
            questions.append(question_bags[n])
            docs.append(doc_bag(gold))
        if len(questions) < 2:
            continue
        logits = embed(questions) @ embed(docs).T / TAU
        labels = torch.arange(len(questions))
        loss = (torch.nn.functional.cross_entropy(logits, labels)
                + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress:
            progress(step + 1, steps)
    return NgramEncoder(vocab, idf, table.weight.detach().numpy())
