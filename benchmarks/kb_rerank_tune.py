"""Session 37's retrieval experiments on the tuning build (docs/knowledge-base.md, "Session 37"); nothing shipped.

    ARGS="--stard STARD --sets SETS --kb /tmp/retr35/tune.sqlite --work /tmp/retr35/work"   # as kb_retrieval_tune.py
    python benchmarks/kb_rerank_tune.py $ARGS extract --features F.npz     # candidate features, once (~1 min)
    python benchmarks/kb_rerank_tune.py $ARGS rerank --features F.npz --config 0,1e-3,30 --config 16,1e-3,30 \
        [--cols fused text cosine memory cited] [--fit-top 10] [--residual 5]
    python benchmarks/kb_rerank_tune.py $ARGS cocite                       # co-citation votes

- `rerank`: a learned re-ranker over the best TOP fused candidates (FEATURES of each → a linear model or a
  one-hidden-layer MLP, listwise softmax loss), trained on stard_tune + fakao_tune only (questions the tuning
  build's encoder and memory never saw; 5-fold cross-validation there) and read on consult_dev and LawBench 3-8 /
  3-1 / 3-2, never trained on. `--residual W` adds W × the shipped fused score to the model's output (a learned
  correction, zero at the start), `--fit-top N` lets the loss see only the best N candidates.
- `cocite`: articles often cited together in the memory's training questions vote for each other: each of the
  best T candidates adds W × its score ÷ the best × P(other | it) (co-citation count ÷ its count, pairs seen at
  least M times) — W, T, M over a small grid, recall@5/@100 per tuning set as kb_retrieval_tune.py prints them.

Both run on the shipped settings (the ensemble of seeds 0, 1, 2 from kb_retrieval_tune.py's cache).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import kb_retrieval_tune as tune  # noqa: E402
from kb_retrieval_sets import SetScore, read_sets, resolve, score_question  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from itertools import permutations  # noqa: E402
from lawtune.kb import open_store, retrieval  # noqa: E402
from lawtune.kb.names import LawNames  # noqa: E402
from lawtune.kb.retrieval import Retriever, _dense_key  # noqa: E402
from lawtune.kb.store import Hit  # noqa: E402

TOP = 50  # candidates re-ranked
TRAIN = ("stard_tune", "fakao_tune")
FEATURES = ("fused", "text", "cosine", "memory", "cited", "log_rank", "log_text_rank", "log_cos_rank", "law_share",
            "law_first", "mem_law_share", "article_prior", "law_prior", "statute", "named", "log_len", "early",
            "cos_min", "cos_max", "gap", "dense_only", "law_count")


def components(retriever: Retriever, query: str, ranked: list):
    """_fuse_dense's parts per candidate: entry, key, text score ÷ best, cosine, memory vote, cited vote."""
    index = retriever.dense
    vector = index.query_vector(query)
    best = ranked[0].score if ranked and ranked[0].score > 0 else 1.0
    rows = {}
    order = []
    keys = [_dense_key(h) for h in ranked]
    cosines = iter(index.cosines(vector, [k for k in keys if k]))
    votes = index.votes(vector, retrieval.MEMORY_NEIGHBOURS, retrieval.MEMORY_POWER, retrieval.MEMORY_FLOOR)
    for n, (h, key) in enumerate(zip(ranked, keys)):
        slot = key or ("hit", n)
        rows[slot] = {"entry": h, "key": key, "text": h.score / best, "cosine": next(cosines) if key else 0.0,
                      "memory": votes.get(key, 0.0) if key else 0.0, "cited": 0.0, "text_rank": n}
        order.append(slot)
    for key, cosine in index.top(vector, retrieval.DENSE_POOL):
        if key not in rows:
            rows[key] = {"entry": key, "key": key, "text": 0.0, "cosine": cosine, "memory": votes.get(key, 0.0),
                         "cited": 0.0, "text_rank": 200}
    voted = [k for k in votes if k not in rows]
    for key, cosine in zip(voted, index.cosines(vector, voted)):
        rows[key] = {"entry": key, "key": key, "text": 0.0, "cosine": cosine, "memory": votes[key], "cited": 0.0,
                     "text_rank": 200}
    for r in rows.values():
        r["fused"] = r["text"] + retrieval.DENSE_WEIGHT * r["cosine"] + retrieval.MEMORY_WEIGHT * r["memory"]
    # the citation votes: the product's own (Retriever._cited_votes), each entry's share read back from its score
    entries = list(rows.values())
    voted = retriever._cited_votes([(r["fused"], r["entry"]) for r in entries])
    for r, (score, _) in zip(entries, voted):
        r["cited"], r["fused"] = score - r["fused"], score
    for vote, ref in voted[len(entries):]:  # cited articles that were not candidates join with the vote alone
        rows[ref] = {"entry": ref, "key": ref, "text": 0.0, "cosine": index.cosines(vector, [ref])[0]
                     if ref in index.row else 0.0, "memory": 0.0, "fused": vote, "cited": vote, "text_rank": 200}
    return vector, votes, list(rows.values())


def member_cosines(index, vector, keys):
    blocks = index.encoder.blocks
    q = vector.reshape(blocks, -1)
    out = []
    for key in keys:
        row = index.row.get(key)
        if row is None:
            out.append((0.0, 0.0))
            continue
        a = index.vectors[row].reshape(blocks, -1)
        cos = (q * a).sum(-1) * blocks
        out.append((float(cos.min()), float(cos.max())))
    return out


class Priors:
    def __init__(self, index):
        self.article: dict = {}
        self.law: dict = {}
        for keys in index.memory_keys:
            for key in keys:
                self.article[key] = self.article.get(key, 0) + 1
                self.law[key[0]] = self.law.get(key[0], 0) + 1 / len(keys)
        self.total = max(sum(self.law.values()), 1.0)


def features(retriever: Retriever, priors: Priors, names: LawNames, query: str, ranked: list):
    """(items, matrix) of the best TOP candidates by the fused score."""
    index = retriever.dense
    vector, votes, rows = components(retriever, query, ranked)
    rows.sort(key=lambda r: r["fused"], reverse=True)
    rows = rows[:TOP]
    items = []
    for r in rows:
        entry = r["entry"]
        items.append(entry.item if isinstance(entry, Hit) else retriever.store.lookup(*entry))
    keep = [n for n, item in enumerate(items) if item is not None]
    rows = [rows[n] for n in keep]
    items = [items[n] for n in keep]
    if not rows:
        return items, np.zeros((0, len(FEATURES)), np.float32)
    named = {law for _, _, law in names.find(query)}
    cos_order = np.argsort(-np.array([r["cosine"] for r in rows]))
    cos_rank = np.empty(len(rows))
    cos_rank[cos_order] = np.arange(len(rows))
    head = rows[:20]
    law_mass: dict = {}
    law_count: dict = {}
    for r, item in zip(head, items):
        law_mass[item.law_full] = law_mass.get(item.law_full, 0.0) + max(r["fused"], 0.0)
        law_count[item.law_full] = law_count.get(item.law_full, 0) + 1
    total = sum(law_mass.values()) or 1.0
    mem_law: dict = {}
    for key, v in votes.items():
        mem_law[key[0]] = mem_law.get(key[0], 0.0) + v
    mem_total = sum(mem_law.values()) or 1.0
    members = member_cosines(index, vector, [r["key"] for r in rows])
    top = rows[0]["fused"] or 1.0
    x = np.zeros((len(rows), len(FEATURES)), np.float32)
    for n, (r, item, (cmin, cmax)) in enumerate(zip(rows, items, members)):
        law = item.law_full
        key = r["key"]
        x[n] = (r["fused"], r["text"], r["cosine"], r["memory"], r["cited"], math.log1p(n), math.log1p(r["text_rank"]),
                math.log1p(cos_rank[n]), law_mass.get(law, 0.0) / total, float(law == items[0].law_full),
                mem_law.get(law, 0.0) / mem_total, math.log1p(priors.article.get(key, 0)),
                math.log((priors.law.get(law, 0.0) + 0.1) / priors.total), float(bool(retrieval.STATUTE_RE.match(law or ""))),
                float(law in named), math.log1p(len(item.text)), float((item.article or 0) <= 3), cmin, cmax,
                r["fused"] / top, float(isinstance(r["entry"], tuple)), math.log1p(law_count.get(law, 0)))
    return items, x


def tuning_setup(args):
    """(sets, golds, candidates) of the tuning build, its pairs without the tuning slices (kb_retrieval_tune.py)."""
    held = tune.write_tune_sets(args.stard, args.sets)
    tune.HELD[:] = held
    tune.STARD[:] = [args.stard]
    tune.exclude_tune_pairs(held)
    sets = read_sets(args.sets, args.only, 0)
    with open_store(args.kb) as store:
        catalog = store.catalog()
        names = LawNames([*catalog.versions, *catalog.repealed])
        golds = {(n, r["id"]): [resolve(store, catalog, names, g, r.get("reference", "")) for g in r["gold"]]
                 for n, records in sets.items() for r in records}
    return sets, golds, tune.candidates(args.kb, sets, args.work / f"candidates-{args.kb.stem}-0.pkl"), names


def shipped_retriever(store, args) -> Retriever:
    """A retriever over the tuning build with the shipped encoder: the ensemble of seeds 0, 1, 2."""
    index, _ = tune.ensemble_variant(store, {"ens": "0+1+2"}, args.work / f"encoders-{args.kb.stem}")
    retriever = Retriever(store)
    retriever.search("预热", k=1)
    retriever.dense = index
    return retriever


def extract(args) -> None:
    sets, golds, cands, names = tuning_setup(args)
    out = {"x": [], "y": [], "q": [], "set": [], "ngold": []}
    with open_store(args.kb) as store:
        retriever = shipped_retriever(store, args)
        priors = Priors(retriever.dense)
        start = time.perf_counter()
        qn = 0
        for name, records in sets.items():
            for r in records:
                exact, ranked = cands[(name, r["id"])]
                g = golds[(name, r["id"])]
                items, x = features(retriever, priors, names, r["question"], ranked)
                y = np.array([any(gold.row and gold.matches(item) for gold in g) for item in items], np.float32)
                out["x"].append(x)
                out["y"].append(y)
                out["q"].append(np.full(len(x), qn))
                out["set"].append(name)
                out["ngold"].append(len(g))
                qn += 1
        print(f"features: {qn} questions, {time.perf_counter() - start:.0f} s")
    args.features.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.features, x=np.concatenate(out["x"]), y=np.concatenate(out["y"]), q=np.concatenate(out["q"]),
             set=np.array(out["set"]), ngold=np.array(out["ngold"]))


# ---- the re-ranker: training and reading

def groups(q: np.ndarray):
    bounds = np.flatnonzero(np.diff(q)) + 1
    return np.split(np.arange(len(q)), bounds)


def recall5(scores, y, idx, ngold):
    out = []
    for qi, rows in enumerate(idx):
        order = np.argsort(-scores[rows], kind="stable")[:5]
        out.append(y[rows][order].sum() / max(ngold[qi], 1))
    return np.array(out)


def fit(x, y, idx, fused, hidden: int, l2: float, epochs: int, residual: float, fit_top: int, seed: int = 0):
    """A scorer trained with a listwise softmax over each question's best `fit_top` candidates (questions with a
    gold among them); its output + `residual` × the fused score."""
    import torch

    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y)
    layers = ([torch.nn.Linear(x.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)] if hidden
              else [torch.nn.Linear(x.shape[1], 1)])
    model = torch.nn.Sequential(*layers)
    torch.nn.init.zeros_(layers[-1].weight)  # starts as the fused score alone (with --residual)
    torch.nn.init.zeros_(layers[-1].bias)
    base = torch.from_numpy(fused * residual)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=l2)
    useful = [torch.from_numpy(rows[:fit_top]) for rows in idx if y[rows[:fit_top]].sum() > 0]
    for _ in range(epochs):
        for batch in torch.randperm(len(useful)).split(32):
            loss = 0.0
            for i in batch.tolist():
                rows = useful[i]
                scores = model(xt[rows]).squeeze(-1) + base[rows]
                loss = loss - (yt[rows] / yt[rows].sum() * torch.log_softmax(scores, 0)).sum()
            optimizer.zero_grad()
            (loss / len(batch)).backward()
            optimizer.step()
    model.eval()

    def predict(xn, fused_n):
        with torch.no_grad():
            return model(torch.from_numpy((xn - mean) / std)).squeeze(-1).numpy() + fused_n * residual

    return predict


def rerank(args) -> None:
    data = np.load(args.features)
    y, q, sets, ngold = data["y"], data["q"], data["set"], data["ngold"]
    fused = data["x"][:, FEATURES.index("fused")]
    x = data["x"][:, [FEATURES.index(f) for f in (args.cols or FEATURES)]]
    idx = groups(q)
    names = sorted(set(sets.tolist()))
    base = {n: recall5(fused, y, [idx[i] for i in np.flatnonzero(sets == n)], ngold[sets == n]).mean() for n in names}
    train_q = np.flatnonzero(np.isin(sets, TRAIN))
    folds = np.array_split(np.random.default_rng(0).permutation(train_q), 5)

    def trained(questions):
        rows = np.concatenate([idx[i] for i in questions])
        return fit(x[rows], y[rows], [np.searchsorted(rows, idx[i]) for i in questions], fused[rows], hidden, l2,
                   epochs, args.residual, args.fit_top)

    for hidden, l2, epochs in args.configs or [(0, 1e-4, 30), (16, 1e-4, 30)]:
        cv = {n: [] for n in TRAIN}
        for fold in folds:
            predict = trained(np.setdiff1d(train_q, fold))
            for i in fold:
                rows = idx[i]
                cv[sets[i]].append(recall5(predict(x[rows], fused[rows]), y[rows], [np.arange(len(rows))], ngold[[i]])[0])
        scores = trained(train_q)(x, fused)
        cells = []
        for n in names:
            qs = np.flatnonzero(sets == n)
            value = np.mean(cv[n]) if n in cv else recall5(scores, y, [idx[i] for i in qs], ngold[qs]).mean()
            cells.append(f"{n.replace('lawbench_', '')} {base[n]:.3f}→{value:.3f}")
        print(f"hidden {hidden} l2 {l2} epochs {epochs}: " + " | ".join(cells) + "  (recall@5: shipped → re-ranked; "
              f"{', '.join(TRAIN)} cross-validated)", flush=True)


# ---- co-citation votes

COCITE_GRID = [(0.0, 0, 1)] + [(w, t, m) for w in (0.25, 0.5, 1.0) for t in (3, 5) for m in (1, 2)]


def cocite(args) -> None:
    sets, golds, cands, _ = tuning_setup(args)
    with open_store(args.kb) as store:
        retriever = shipped_retriever(store, args)
        count, together = Counter(), defaultdict(list)
        pairs = Counter()
        for keys in retriever.dense.memory_keys:  # the tuning pairs' questions and their articles
            keys = list(dict.fromkeys(keys))
            count.update(keys)
            pairs.update(permutations(keys, 2))
        for (a, b), n in pairs.items():
            together[a].append((b, n))
        fused = {key: (exact, retriever._fuse_dense(r["question"], ranked, tune.K, ("article", "qa")))
                 for name, records in sets.items() for r in records
                 for key, (exact, ranked) in [((name, r["id"]), cands[(name, r["id"])])]}
        for weight, top_n, least in COCITE_GRID:
            scores = {name: SetScore(name) for name in sets}
            for (name, rid), (exact, hits) in fused.items():
                if weight:
                    hits = _with_cocitations(store, hits, count, together, weight, top_n, least)
                seen = {Retriever._key(h) for h in exact}
                ranked = (exact + [h for h in hits if Retriever._key(h) not in seen])[:tune.K]
                score_question(scores[name], golds[(name, rid)], ranked, 0.0)
            print(f"cocite weight {weight} top {top_n} min pairs {least}: {tune.summary(scores)}", flush=True)


def _with_cocitations(store, hits, count, together, weight, top_n, least):
    best = hits[0].score if hits and hits[0].score > 0 else 1.0
    votes: Counter = Counter()
    for hit in hits[:top_n]:
        key = _dense_key(hit)
        for other, n in together.get(key, ()) if key and count[key] else ():
            if n >= least:
                votes[other] += weight * hit.score / best * n / count[key]
    if not votes:
        return hits
    out = [Hit(h.item, h.score + votes.pop(key, 0.0)) if (key := _dense_key(h)) else h for h in hits]
    for key, vote in votes.items():
        item = store.lookup(*key)
        if item is not None and item.current:
            out.append(Hit(item, vote))
    return sorted(out, key=lambda h: h.score, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("extract", "rerank", "cocite"))
    parser.add_argument("--stard", type=Path, required=True)
    parser.add_argument("--sets", type=Path, required=True)
    parser.add_argument("--kb", type=Path, required=True, help="the tuning build (kb_retrieval_tune.py)")
    parser.add_argument("--work", type=Path, required=True, help="kb_retrieval_tune.py's --work (its caches)")
    parser.add_argument("--features", type=Path, help="extract: written; rerank: read")
    parser.add_argument("--only", nargs="+", default=[*TRAIN, "consult_dev", "lawbench_3-8", "lawbench_3-1",
                                                       "lawbench_3-2"])
    parser.add_argument("--cols", nargs="*", help=f"rerank: the features used (default all: {' '.join(FEATURES)})")
    parser.add_argument("--config", dest="configs", action="append", help="rerank: hidden,l2,epochs (0 hidden: linear)",
                        type=lambda s: tuple(float(v) if "." in v or "e" in v else int(v) for v in s.split(",")))
    parser.add_argument("--residual", type=float, default=0.0, help="rerank: + this × the fused score")
    parser.add_argument("--fit-top", type=int, default=TOP, help="rerank: candidates per question the loss sees")
    args = parser.parse_args()
    if args.mode != "cocite" and args.features is None:
        parser.error(f"{args.mode} needs --features")
    {"extract": extract, "rerank": rerank, "cocite": cocite}[args.mode](args)


if __name__ == "__main__":
    main()
