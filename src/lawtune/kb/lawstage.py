"""The law stage of retrieval: which laws a question is about, learned from the same pairs as the encoder.

    model = train_law_model(encoder, pairs, [a.law_full for a in articles])   # kb build (dense.train_dense)
    model.probabilities(query_vector)        # {law_full: P(law | question)}, the laws summing to 1
    LawModel.from_arrays(**model.arrays())   # stored inside the dense blob (dense.py)

Why: on real questions the law is found far more often than the article (STARD law recall@5 0.85 against
article 0.52), and an oracle that lifts the gold laws' articles (×2) raised the tuning slice of STARD from
0.511 to 0.566 recall@5 (docs/knowledge-base.md, "The question memory"). A classifier over laws tells the
ranking which law's articles to prefer.

Model: softmax(W · v + b) over the KB's current laws, v the frozen encoder's question vector (unit length,
scaled by `SCALE`). Trained with cross-entropy on every training pair — a statute sentence or heading → its
law, an interpretation's article → the laws it cites, a real question → its articles' laws (soft target, the
laws shared equally) — Adam, `EPOCHS` epochs, seed 0, one torch thread: deterministic, a few seconds for all
of LawRefBook. Laws added later by `kb add` have no row: they get probability 0 (no lift, and no penalty).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TRAIN = False  # kb build trains and stores the law model (dense.train_dense); search uses it when retrieval.LAW_WEIGHT > 0
SCALE = 20.0  # the unit question vector is scaled by this before the linear layer (a softmax temperature)
EPOCHS = 4
BATCH = 1024
LEARNING_RATE = 0.01


class LawModel:
    def __init__(self, laws: list[str], weight: np.ndarray, bias: np.ndarray):
        self.laws = laws
        self.weight = weight.astype(np.float32)  # (dim, len(laws))
        self.bias = bias.astype(np.float32)

    def probabilities(self, vector: np.ndarray) -> dict[str, float]:
        if not self.laws:
            return {}
        logits = (vector * SCALE) @ self.weight + self.bias
        logits = np.exp(logits - logits.max())
        logits /= logits.sum()
        return dict(zip(self.laws, logits.tolist()))

    def arrays(self) -> dict:
        return {"law_weight": self.weight.astype(np.float16), "law_bias": self.bias.astype(np.float32)}


def train_law_model(encoder, pairs: Sequence[tuple[str, Sequence[int]]], article_laws: Sequence[str],
                    seed: int = 0) -> LawModel:
    """The classifier over the laws of `article_laws` (each article's law_full), trained on `pairs` (question,
    [article index, ...]) with the questions encoded by `encoder` (frozen)."""
    import torch

    pairs = [(q, golds) for q, golds in pairs if golds]
    laws = sorted(set(article_laws))
    if not pairs or not laws:
        return LawModel(laws, np.zeros((encoder.dim, len(laws)), np.float32), np.zeros(len(laws), np.float32))
    law_id = {law: n for n, law in enumerate(laws)}
    questions = list(dict.fromkeys(q for q, _ in pairs))
    row = {q: n for n, q in enumerate(questions)}
    x = torch.from_numpy(encoder.encode(questions, query=True)) * SCALE
    which = torch.tensor([row[q] for q, _ in pairs])
    # soft targets as (pair, law, share) triples: a question about two laws counts half for each
    target_rows, target_laws, target_shares = [], [], []
    for n, (_, golds) in enumerate(pairs):
        ids = sorted({law_id[article_laws[g]] for g in golds})
        target_rows += [n] * len(ids)
        target_laws += ids
        target_shares += [1.0 / len(ids)] * len(ids)
    target_laws_t = torch.tensor(target_laws)
    target_shares_t = torch.tensor(target_shares)
    starts = np.searchsorted(np.asarray(target_rows), np.arange(len(pairs) + 1))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(seed)
        layer = torch.nn.Linear(x.shape[1], len(laws))
        with torch.no_grad():
            layer.weight.normal_(0.0, 0.01, generator=generator)
            layer.bias.zero_()
        optimizer = torch.optim.Adam(layer.parameters(), lr=LEARNING_RATE)
        for _ in range(EPOCHS):
            order = torch.randperm(len(pairs), generator=generator)
            for start in range(0, len(pairs), BATCH):
                batch = order[start:start + BATCH]
                logp = torch.log_softmax(layer(x[which[batch]]), dim=-1)
                # the batch's targets: gather each pair's (law, share) entries
                spans = [np.arange(starts[b], starts[b + 1]) for b in batch.tolist()]
                sizes = torch.tensor([len(s) for s in spans])
                entries = torch.from_numpy(np.concatenate(spans))
                local = torch.repeat_interleave(torch.arange(len(batch)), sizes)
                loss = -(target_shares_t[entries] * logp[local, target_laws_t[entries]]).sum() / len(batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return LawModel(laws, layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy())
