"""Tune the learned retriever fast: the BM25 half of every search once, then encoder and fusion variants re-fused.

    python benchmarks/retrieval_sets.py -o SETS                                   # the local sets (consult_dev, 3-x …)
    python benchmarks/kb_retrieval_tune.py --stard /tmp/lawtune-fetched/STARD --sets SETS --kb /tmp/tune.sqlite \
        --only stard_tune consult_dev lawbench_3-8 fakao_tune -- base repeat=8 lknn=10,lw=1.0,lprior=1 ...

(Variants go after `--`: `--only` takes every word that follows it.)

Tuning discipline (docs/knowledge-base.md, "Session 32: the rule"): the sets read here are the tuning sets —
`stard_tune` (STARD TRAIN positions 0, 4, 8, …), `fakao_tune` (the fakao exam cases, positions 0, 4, 8, …: case
style), consult_dev, lawbench_3-8, with 3-1 and 3-2 as guards; both slices and the held-out `stard_hold` /
`fakao_hold` (positions 2, 6, 10, …) are written by this script. For the tuning build all four slices, and every
retriever-pair question that is a near-duplicate of one, are taken out of the pairs (`exclude_tune_pairs`), so
nothing learned has seen them. `stard_hold` / `fakao_hold` are read only with `--hold` (once, at the end);
STARD's dev split only with `--final`.

How: the KB (built with `lawtune.kb.build.build`, the `kb build` path, with the tuning pairs) is searched once
per question with the dense fusion (retrieval.py step 8) captured instead of applied: the list that step
receives is cached (`--work`; questions not cached yet are added). A variant then trains its own encoder
(`DenseIndex`, cached by name) and/or changes the fusion, and only step 8 runs again — seconds to minutes per
variant instead of a build and a full search. Each variant is `name` or `key=value[,key=value]` (see
VARIANT_KEYS, FUSE_KEYS and the law-stage keys below); `base` is the shipped settings.

`--final --kb KB --sets DIR --only stard_dev …` is a reading on a KB from `lawtune kb build` (all pairs), stard_dev
allowed, every variant (e.g. `base mem=0 weight=0`: after, before, BM25 default) from one BM25 pass over the same
build.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "raw"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kb_retrieval_sets import SetScore, print_table, read_sets, resolve, score_question  # noqa: E402
from lawtune.kb import dense as dense_module, encoder as encoder_module, open_store  # noqa: E402
from lawtune.kb import lawstage, retrieval, training_pairs as pairs_module  # noqa: E402
from lawtune.kb.build import build  # noqa: E402
from lawtune.kb.dense import DenseIndex, article_text, _key  # noqa: E402
from lawtune.kb.encoder import NgramEncoder  # noqa: E402
from lawtune.kb.names import LawNames  # noqa: E402
from lawtune.kb.retrieval import Retriever  # noqa: E402
from lawtune.modeling.loading import cpu_flags  # noqa: E402
from retrieval_sets import NearDuplicates, fakao_cases, law_names, stard, stard_split_ids  # noqa: E402

TUNE_SETS = ("stard_tune", "consult_dev", "lawbench_3-8", "fakao_tune", "lawbench_3-1", "lawbench_3-2")
SCORED = ("stard_tune", "consult_dev", "lawbench_3-8", "fakao_tune")  # the score: mean recall@5 of these
HOLD_SETS = ("stard_hold", "fakao_hold")  # held out: read once at the end (--hold)
TUNE_EVERY = 4  # stard_tune / fakao_tune: positions 0, 4, 8, …; stard_hold / fakao_hold: 2, 6, 10, …
HOLD_OFFSET = 2
K = 100


# ---- the tuning and held-out slices (STARD's train split, the fakao exam cases)

def tune_ids(stard_dir: Path) -> list[int]:
    return stard_split_ids(stard_dir / "data", "train")[::TUNE_EVERY]


def write_tune_sets(stard_dir: Path, sets: Path) -> list[str]:
    """Write sets/{stard,fakao}_{tune,hold}.jsonl; every question of the four (all leave the pairs)."""
    names = law_names(SHARED / "laws_lawrefbook")
    train = stard(stard_dir, names, "train")
    cases = fakao_cases(SHARED / "lawyer_llama" / "fakao_gpt4.json", names)
    slices = {"stard_tune": train[::TUNE_EVERY], "stard_hold": train[HOLD_OFFSET::TUNE_EVERY],
              "fakao_tune": cases[::TUNE_EVERY], "fakao_hold": cases[HOLD_OFFSET::TUNE_EVERY]}
    questions = []
    sets.mkdir(parents=True, exist_ok=True)
    for name, records in slices.items():
        records = [dict(r, id=f"{name}:{r['id'].split(':', 1)[1]}") for r in records]
        (sets / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                            encoding="utf-8")
        questions += [r["question"] for r in records]
        print(f"{name}: {len(records)} questions")
    return questions


def exclude_tune_pairs(questions: list[str]) -> None:
    """Drop the tuning and held-out questions and their near-duplicates from the retriever pairs (this process
    only)."""
    near = NearDuplicates(questions)
    original = pairs_module.real_pairs
    dropped = []

    def filtered(index, names):
        for question, golds in original(index, names):
            if near.matches(question):
                dropped.append(question)
                continue
            yield question, golds

    pairs_module.real_pairs = filtered
    filtered.dropped = dropped  # type: ignore[attr-defined]


# ---- the BM25 half, once

def candidates(kb: Path, sets: dict, cache: Path) -> dict:
    """(set, id) → (exact hits, the list retrieval step 8 receives), cached in `cache` (questions not cached yet
    are searched and added)."""
    out = pickle.loads(cache.read_bytes()) if cache.exists() else {}
    todo = [(name, r) for name, records in sets.items() for r in records if (name, r["id"]) not in out]
    if not todo:
        return out
    captured: list = []
    original = Retriever._fuse_dense

    def capture(self, query, ranked, k, kinds):
        captured.append(ranked)
        return ranked

    Retriever._fuse_dense = capture
    try:
        with open_store(kb) as store:
            retriever = Retriever(store)
            start = time.process_time()
            for name, r in todo:
                captured.clear()
                hits = retriever.search(r["question"], k=K)
                out[(name, r["id"])] = ([h for h in hits if h.exact], captured[0] if captured else hits)
            print(f"candidates: {len(todo)} questions searched, {time.process_time() - start:.0f} s CPU")
    finally:
        Retriever._fuse_dense = original
    cache.write_bytes(pickle.dumps(out))
    return out


# ---- variants

VARIANT_KEYS = {  # key: (module, attribute) the variant sets while its encoder trains / it fuses
    "steps": (encoder_module, "MAX_STEPS"), "epochs": (encoder_module, "EPOCHS"), "dim": (encoder_module, "DIM"),
    "lr": (encoder_module, "LEARNING_RATE"), "tau": (encoder_module, "TAU"), "batch": (encoder_module, "BATCH"),
    "hard": (encoder_module, "HARD_NEGATIVES"), "repeat": (pairs_module, "REAL_REPEAT"),
    "qside": (encoder_module, "QUERY_SIDE"), "lawshare": (pairs_module, "LAW_SHARE"),
    "weight": (retrieval, "DENSE_WEIGHT"), "pool": (retrieval, "DENSE_POOL"),
    "mem": (retrieval, "MEMORY_WEIGHT"), "mem_m": (retrieval, "MEMORY_NEIGHBOURS"), "mem_p": (retrieval, "MEMORY_POWER"),
    "mem_f": (retrieval, "MEMORY_FLOOR"),
    "cite": (retrieval, "CITED_WEIGHT"), "cite_n": (retrieval, "CITED_VOTERS"),
    "lw": (retrieval, "LAW_WEIGHT"), "lscale": (lawstage, "SCALE"), "lepochs": (lawstage, "EPOCHS"),
    "llr": (lawstage, "LEARNING_RATE"),
}
LAW_KEYS = {"lscale", "lepochs", "llr", "lreal"}  # what the law model is trained with (lreal: real pairs × this more)
# the law stage (retrieval.Retriever._law_stage; lw = retrieval.LAW_WEIGHT): P(law) from lawstage.LawModel trained
# here on the tuning pairs, or with lknn=M from the question memory (KnnLaws; lknn_p its power, lmix the share of
# the learned model mixed in, lknn_f a floor: only neighbours at least that similar vote); lprior=1 subtracts each law's mean P over the memory's questions (Debiased);
# lpow=X raises P to X (Sharpened); ladd=1 adds LAW_WEIGHT × P instead of multiplying (retrieval.LAW_MODE "add");
# session 33's gates on the kind of question (CaseKnnLaws, with lknn=M): lsrc=1 only the exam cases vote, lgate=T
# the stage acts only when the exam cases hold at least T of the neighbours' vote mass, labs=1 P = mass ÷ M,
# lagree=T only when one law holds at least T of the voting neighbours' mass (the neighbours agree); ldis=N (any
# law model) only when the top N candidates before the stage span more than one law; nclf=1 P(law) from the character
# n-gram classifier on the real questions (NgramLaws: nadj, nlaw, nep, nlr, nl2; not with lprior, use nadj)
TRAIN_KEYS = {"steps", "epochs", "dim", "lr", "tau", "batch", "hard", "repeat", "seed", "qside", "lawshare",
              "ans", "anslen", "anssrc", "pseudo", "pmode", "pmargin", "mneg", "mnegf"}
PSEUDO_KEYS = {"pseudo", "pmode", "pmargin", "pmem"}
# session 35, question → answer pairs in the encoder's training (not in the memory): ans=N each pair N times,
# anslen=C the answer's first C characters (300), anssrc=advice (Lawyer LLaMA legal_advice, default) | own (the
# answers of the consultations already in the pairs) | all (both); every question a near-duplicate of a held-out or
# tuning question is dropped first (answer_text_pairs); pseudo=N: legal_advice questions labelled with the tuning
# build's own top-1 article (pseudo_labels) as question → article pairs, N times each, where pmode=agree (the fused
# top-1 is the BM25 part's top-1 too, default) | memory (it is the memory's most-voted article) | both, and with
# pmargin=M only where (top-1 − top-2) ÷ top-1 ≥ M; pmem=1 (not a training key) adds the same labels to the memory;
# mneg=M hard negatives from the memory's wrong neighbours (memory_negatives): the articles of a training question's
# M nearest training questions (the stored encoder's cosine, at least mnegf) that share none of its articles
# memseed=S (not a training key): the question memory and its votes from the default encoder of seed S (0: the
# stored one), the cosines from the variant's (SplitMemory)
# fusion keys read by `fuse` (prototypes of what retrieval.py may adopt):
#   knn: weight of the question memory's votes (the training questions nearest the question vote for their
#        articles); knn_m: how many neighbours (20); knn_p: similarity exponent (1)
#   expand: article vector + expand × the mean vector of its training questions (document expansion)
#   law: articles of the laws the memory votes for get × (1 + law × the law's share of the votes)
#   lawclf: articles get × (1 + lawclf × P(law | question)) from a linear law classifier on the question vector
#           (LawClassifier: trained on the same pairs as the encoder, each pair → its articles' laws)
FUSE_KEYS = {"knn", "knn_m", "knn_p", "expand", "law", "law_m", "lawclf"}
# oracle=W: the product's law stage (retrieval.LAW_WEIGHT W) with P = 1 for the question's gold laws — the ceiling
# of any law stage


class LawClassifier:
    """softmax(W · question vector + b) over the KB's laws, trained on the encoder's pairs (frozen encoder)."""

    def __init__(self, store, index: DenseIndex, epochs: int = 4, seed: int = 0):
        import torch

        articles = store.current_articles()
        catalog = store.catalog()
        names = LawNames([*catalog.versions, *catalog.repealed])
        pairs = pairs_module.training_pairs(articles, names)
        self.laws = sorted({a.law_full for a in articles})
        law_id = {law: n for n, law in enumerate(self.laws)}
        questions = list(dict.fromkeys(q for q, _ in pairs))
        row = {q: n for n, q in enumerate(questions)}
        x = torch.from_numpy(index.encoder.encode(questions, query=True))
        targets = torch.zeros(len(pairs), len(self.laws))
        which = torch.tensor([row[q] for q, _ in pairs])
        for n, (_, golds) in enumerate(pairs):
            laws = {law_id[articles[g].law_full] for g in golds}
            for law in laws:
                targets[n, law] = 1.0 / len(laws)
        torch.manual_seed(seed)
        layer = torch.nn.Linear(x.shape[1], len(self.laws))
        optimizer = torch.optim.Adam(layer.parameters(), lr=0.01)
        for _ in range(epochs):
            order = torch.randperm(len(pairs))
            for start in range(0, len(pairs), 1024):
                batch = order[start:start + 1024]
                loss = torch.nn.functional.cross_entropy(layer(x[which[batch]] * 20),
                                                         targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.weight = layer.weight.detach().numpy().T.copy()
        self.bias = layer.bias.detach().numpy().copy()

    def probabilities(self, vector: np.ndarray) -> dict[str, float]:
        logits = vector * 20 @ self.weight + self.bias
        logits = np.exp(logits - logits.max())
        logits /= logits.sum()
        return dict(zip(self.laws, logits.tolist()))


class Memory:
    """The training questions (the real pairs this process trains on) as vectors, with their articles' keys."""

    def __init__(self, store, index: DenseIndex):
        articles = store.current_articles()
        catalog = store.catalog()
        names = LawNames([*catalog.versions, *catalog.repealed])
        lookup = {(a.law_full, a.article, a.sub): n for n, a in enumerate(articles)}
        real = list(pairs_module.real_pairs(lookup, names))
        self.questions = [q for q, _ in real]
        self.golds = [[_key(articles[g]) for g in golds] for _, golds in real]
        self.vectors = index.encoder.encode(self.questions, query=True) if real else np.zeros((0, index.encoder.dim), np.float32)

    def votes(self, vector: np.ndarray, m: int, p: float) -> dict:
        sims = self.vectors @ vector
        m = min(m, len(sims))
        out: dict = {}
        for n in np.argpartition(-sims, m - 1)[:m]:
            if sims[n] <= 0:
                continue
            weight = float(sims[n]) ** p / len(self.golds[n])
            for key in self.golds[n]:
                out[key] = out.get(key, 0.0) + weight
        return out

    def expanded(self, index: DenseIndex, alpha: float) -> DenseIndex:
        sums: dict = {}
        for vector, golds in zip(self.vectors, self.golds):
            for key in golds:
                total, n = sums.get(key, (0.0, 0))
                sums[key] = (total + vector, n + 1)
        vectors = index.vectors.copy()
        for key, (total, n) in sums.items():
            row = index.row.get(key)
            if row is not None:
                mean = total / n
                v = vectors[row] + alpha * mean / max(np.linalg.norm(mean), 1e-9)
                vectors[row] = v / np.linalg.norm(v)
        return DenseIndex(index.encoder, index.keys, index.versions, vectors)


def fuse(retriever: Retriever, query: str, ranked: list, k: int, variant: dict, memory: "Memory | None",
         gold_laws: set, classifier: "LawClassifier | None" = None) -> list:
    """retrieval.Retriever._fuse_dense plus the prototypes in FUSE_KEYS."""
    index = retriever.dense
    vector = index.query_vector(query)
    if not vector.any():
        return ranked
    weight = retrieval.DENSE_WEIGHT
    best = ranked[0].score if ranked and ranked[0].score > 0 else 1.0
    keys = [retrieval._dense_key(h) for h in ranked]
    cosines = iter(index.cosines(vector, [key for key in keys if key]))
    scores: dict = {}
    entries: dict = {}
    for n, (h, key) in enumerate(zip(ranked, keys)):
        slot = key or ("hit", n)
        scores[slot] = h.score / best + (weight * next(cosines) if key else 0.0)
        entries[slot] = h
    for key, cosine in index.top(vector, retrieval.DENSE_POOL):
        if key not in scores:
            scores[key] = weight * cosine
            entries[key] = key
    gamma = variant.get("knn", 0.0)
    law_weight = variant.get("law", 0.0)
    if memory is not None and (gamma or law_weight):
        votes = memory.votes(vector, int(variant.get("knn_m", 20)), float(variant.get("knn_p", 1.0)))
        if gamma:
            for key, vote in votes.items():
                if key not in scores:
                    scores[key] = 0.0
                    entries[key] = key
                scores[key] += gamma * vote
        if law_weight:
            per_law: dict = {}
            for key, vote in votes.items():
                per_law[key[0]] = per_law.get(key[0], 0.0) + vote
            total = sum(per_law.values()) or 1.0
            for slot in scores:
                law = _slot_law(slot, entries[slot])
                scores[slot] *= 1.0 + law_weight * per_law.get(law, 0.0) / total
    if variant.get("lawclf") and classifier is not None:
        probabilities = classifier.probabilities(vector)
        for slot in scores:
            scores[slot] *= 1.0 + variant["lawclf"] * probabilities.get(_slot_law(slot, entries[slot]), 0.0)
    fused = []
    for slot in sorted(scores, key=scores.get, reverse=True):
        entry = entries[slot]
        if not isinstance(entry, tuple):
            fused.append(replace(entry, score=scores[slot]))
        elif len(fused) < k + 5:
            item = retriever.store.lookup(*entry)
            if item is not None and item.current:
                fused.append(retrieval.Hit(item, scores[slot]))
    return fused


def _slot_law(slot, entry) -> str:
    return entry[0] if isinstance(entry, tuple) else entry.item.law_full


def parse_variant(text: str) -> dict:
    if text == "base":
        return {}
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        try:
            out[key] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:  # a word (qside=residual)
            out[key] = value
    return out


class Settings:
    """Set module attributes for a block, restore them after."""

    def __init__(self, values: dict):
        self.values = {k: v for k, v in values.items() if k in VARIANT_KEYS}

    def __enter__(self):
        self.saved = {k: getattr(*VARIANT_KEYS[k]) for k in self.values}
        for k, v in self.values.items():
            setattr(*VARIANT_KEYS[k], v)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(*VARIANT_KEYS[k], v)


HELD: list[str] = []  # this process's tuning and held-out slice questions (main fills it)
STARD: list[Path] = []  # the --stard folder (main fills it): its dev split is held out
ANSWER_SOURCES = {"advice": ("legal_advice",), "own": ("own",), "all": ("legal_advice", "own")}


def answer_text_pairs(variant: dict) -> list[tuple[str, str]]:
    """The variant's question → answer pairs (data/build_retriever_pairs.answer_pairs), without any question that
    is a near-duplicate of a held-out question (STARD dev, consult_dev / test, LawBench 3-1 / 3-2 / 3-8) or of this
    process's tuning and held-out slices; each pair `ans` times."""
    if not variant.get("ans"):
        return []
    sys.path.insert(0, str(ROOT / "data"))
    from build_retriever_pairs import answer_pairs, held_out_questions

    source = str(variant.get("anssrc", "advice"))
    if source not in ANSWER_SOURCES:
        raise SystemExit(f"anssrc={source}: one of {', '.join(ANSWER_SOURCES)}")
    near = NearDuplicates(held_out_questions(STARD[0]) + HELD)
    found = answer_pairs(ANSWER_SOURCES[source], int(variant.get("anslen", 300)))
    kept = [(p["question"][:pairs_module.MAX_QUERY], p["answer"]) for p in found if not near.matches(p["question"])]
    print(f"answer pairs ({source}): {len(kept)} of {len(found)} kept (the rest near-duplicates of held-out or "
          f"tuning questions), ×{int(variant['ans'])}")
    return kept * int(variant["ans"])


PSEUDO: list[dict] = []  # pseudo_labels' records (main fills it when a variant asks for them)


def advice_questions() -> list[str]:
    """legal_advice's questions (hualv.com consultations), without near-duplicates of held-out or tuning questions."""
    sys.path.insert(0, str(ROOT / "data"))
    from build_retriever_pairs import held_out_questions, records

    near = NearDuplicates(held_out_questions(STARD[0]) + HELD)
    asked = dict.fromkeys(r["instruction"].strip() for r in records("legal_advice"))
    return [q for q in asked if q and not near.matches(q)]


def pseudo_labels(kb: Path, cache: Path) -> list[dict]:
    """Each legal_advice question (advice_questions) with what the tuning build's retriever (its stored encoder
    and memory: no tuning question seen) says of it: the fused top-1 and top-2 articles and scores, the BM25 part's
    top-1 article and the memory's most-voted article. Self-training: a label can only repeat what the retriever
    already does."""
    questions = advice_questions()
    records = [{"id": f"advice:{n}", "question": q} for n, q in enumerate(questions)]
    cands = candidates(kb, {"advice": records}, cache)
    out = []
    with open_store(kb) as store:
        articles = store.current_articles()
        catalog = store.catalog()
        names = LawNames([*catalog.versions, *catalog.repealed])
        retriever = Retriever(store)
        retriever.dense = with_memory(dense_module.load_dense(store), articles, names)
        for r in records:
            _, ranked = cands[("advice", r["id"])]
            fused = [h for h in retriever._fuse_dense(r["question"], ranked, K, ("article", "qa"))
                     if retrieval._dense_key(h)]
            if len(fused) < 2:
                continue
            first = next((retrieval._dense_key(h) for h in ranked if retrieval._dense_key(h)), None)
            votes = retriever.dense.votes(retriever.dense.query_vector(r["question"]), retrieval.MEMORY_NEIGHBOURS,
                                          retrieval.MEMORY_POWER)
            out.append({"question": r["question"][:pairs_module.MAX_QUERY], "top": retrieval._dense_key(fused[0]),
                        "margin": (fused[0].score - fused[1].score) / max(fused[0].score, 1e-9), "bm25": first,
                        "voted": max(votes, key=votes.get) if votes else None})
    print(f"pseudo-labels: {len(out)} of {len(questions)} legal_advice questions (near-duplicates of held-out or "
          f"tuning questions dropped) labelled; top-1 = BM25's top-1 {sum(p['top'] == p['bm25'] for p in out)}, "
          f"= the memory's {sum(p['top'] == p['voted'] for p in out)}, both "
          f"{sum(p['top'] == p['bm25'] == p['voted'] for p in out)}")
    return out


def chosen_pseudo(variant: dict) -> list[tuple[str, tuple]]:
    """(question, article key) of the pseudo-labels this variant keeps (pmode, pmargin)."""
    mode = str(variant.get("pmode", "agree"))
    tests = {"agree": lambda p: p["top"] == p["bm25"], "memory": lambda p: p["top"] == p["voted"],
             "both": lambda p: p["top"] == p["bm25"] == p["voted"]}
    if mode not in tests:
        raise SystemExit(f"pmode={mode}: one of {', '.join(tests)}")
    margin = float(variant.get("pmargin", 0.0))
    return [(p["question"], p["top"]) for p in PSEUDO if tests[mode](p) and p["margin"] >= margin]


def memory_negatives(store, articles, names, m: int, floor: float) -> dict[str, list[int]]:
    """question → articles wrong for it: the articles of its `m` nearest training questions (the memory, by the
    stored encoder — the first stage) at cosine ≥ `floor` that share none of its articles. These are what the
    memory would vote for wrongly; as negatives the encoder learns to push the two questions apart."""
    asked = pairs_module.question_pairs(articles, names)
    index = dense_module.load_dense(store)
    vectors = index.encoder.encode([q for q, _ in asked], query=True)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    out: dict[str, list[int]] = {}
    for n, (question, golds) in enumerate(asked):
        mine = set(golds)
        wrong: list[int] = []
        for other in np.argsort(-sims[n])[:m]:
            if sims[n, other] >= floor and not mine & set(asked[other][1]):
                wrong += [g for g in asked[other][1] if g not in wrong]
        if wrong:
            out[question] = wrong
    print(f"memory negatives: {len(out)} of {len(asked)} training questions have wrong neighbours "
          f"({sum(map(len, out.values()))} articles)")
    return out


def train_variant(store, variant: dict, folder: Path) -> tuple[DenseIndex, float]:
    """The dense index this variant's training settings give (the stored one when none differ)."""
    train = {k: v for k, v in variant.items() if k in TRAIN_KEYS}
    if not train.get("pseudo"):  # pmode / pmargin alone (with pmem) choose the memory's labels, not a training
        train = {k: v for k, v in train.items() if k not in PSEUDO_KEYS}
    articles = store.current_articles()
    catalog = store.catalog()
    names = LawNames([*catalog.versions, *catalog.repealed])
    if not train:
        return with_memory(dense_module.load_dense(store), articles, names, variant), 0.0
    path = folder / ("-".join(f"{k}={v}" for k, v in sorted(train.items())) + ".npz")
    if path.exists():
        return with_memory(DenseIndex.from_bytes(path.read_bytes()), articles, names, variant), 0.0
    texts = [article_text(a) for a in articles]
    with Settings(train):
        pairs = pairs_module.training_pairs(articles, names)
        if train.get("pseudo"):
            row = {_key(a): n for n, a in enumerate(articles)}
            labelled = [(q, [row[key]]) for q, key in chosen_pseudo(train) if key in row]
            print(f"pseudo-labelled pairs: {len(labelled)}, ×{int(train['pseudo'])}")
            pairs += labelled * int(train["pseudo"])
        answers = answer_text_pairs(train)
        negatives = (memory_negatives(store, articles, names, int(train["mneg"]), float(train.get("mnegf", 0.0)))
                     if train.get("mneg") else None)
        start = time.perf_counter()
        bags: list = []
        encoder = encoder_module.train_encoder(texts, pairs, seed=int(train.get("seed", 0)), article_bags=bags,
                                               article_groups=[a.law_full for a in articles], text_pairs=answers,
                                               negatives=negatives)
        seconds = time.perf_counter() - start
    index = DenseIndex(encoder, [_key(a) for a in articles], [a.version or "" for a in articles],
                       encoder.encode_bags(bags[0]))
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(index.to_bytes())
    return with_memory(index, articles, names, variant), seconds


CASE_SOURCES = ("fakao_gpt4", "judical_examination")  # the exam questions: facts of a case, then "how is it handled"


def pair_sources() -> dict[str, str]:
    """question (as real_pairs yields it) → the `source` of its record in the shipped pairs."""
    from importlib import resources

    text = resources.files("lawtune.kb").joinpath(pairs_module.PAIRS_FILE).read_text("utf-8")
    out: dict[str, str] = {}
    for line in text.splitlines():
        record = json.loads(line)
        out.setdefault(record["question"][:pairs_module.MAX_QUERY], record.get("source", ""))
    return out


def with_memory(index: DenseIndex, articles, names, variant: dict | None = None) -> DenseIndex:
    """The index with the question memory train_dense gives it (of this process's pairs: the tuning ones), and
    which memory rows are exam cases (`memory_case`, for the case-style gates); with `pmem`, the variant's
    pseudo-labelled questions join the memory."""
    asked = pairs_module.question_pairs(articles, names)
    if variant and variant.get("pmem"):
        row = {_key(a): n for n, a in enumerate(articles)}
        known = {q for q, _ in asked}
        asked = asked + [(q, [row[key]]) for q, key in chosen_pseudo(variant) if key in row and q not in known]
    index.memory = index.encoder.encode([q for q, _ in asked], query=True)
    index.memory_keys = [[_key(articles[g]) for g in golds] for _, golds in asked]
    sources = pair_sources()
    index.memory_case = np.array([sources.get(q, "") in CASE_SOURCES for q, _ in asked], bool)
    return index


def ensemble_variant(store, variant: dict, folder: Path) -> tuple[DenseIndex, float]:
    """`ens=0+1+2`: the encoders of these seeds (each trained with the variant's other training keys), stacked
    into one (`NgramEncoder.stack`: the mean of their cosines); the memory encoded with the stack."""
    seeds = [int(s) for s in str(variant["ens"]).split("+")]
    train = {k: v for k, v in variant.items() if k in TRAIN_KEYS and k != "seed"}
    members, seconds = [], 0.0
    for seed in seeds:
        member, spent = train_variant(store, {**train, **({"seed": seed} if seed else {})}, folder)
        members.append(member)
        seconds += spent
    articles = store.current_articles()
    catalog = store.catalog()
    names = LawNames([*catalog.versions, *catalog.repealed])
    first = members[0]
    if any(m.keys != first.keys for m in members):
        raise SystemExit("ens: the members index different articles")
    vectors = np.hstack([m.vectors for m in members]) / np.sqrt(len(members))
    index = DenseIndex(NgramEncoder.stack([m.encoder for m in members]), first.keys, first.versions, vectors)
    return with_memory(index, articles, names, variant), seconds


class SplitMemory:
    """A dense index whose question memory (and the query vector the memory is searched with) comes from another
    encoder: the variant's encoder gives the cosines, `memory_index`'s (e.g. the default's) the votes (the
    `memseed=S` variant: the memory of the default encoder trained with seed S; 0 = the stored one)."""

    def __init__(self, index: DenseIndex, memory_index: DenseIndex):
        self.index, self.memory_index, self.last = index, memory_index, ""

    def __getattr__(self, name):
        return getattr(self.index, name)

    def __bool__(self) -> bool:
        return True

    def query_vector(self, query: str) -> np.ndarray:
        self.last = query
        return self.index.query_vector(query)

    def votes(self, vector, neighbours: int, power: float, floor: float = 0.0) -> dict:
        return self.memory_index.votes(self.memory_index.query_vector(self.last), neighbours, power, floor)


class OracleLaws:
    """A law model that knows the answer: P = 1 for the current question's gold laws (the `oracle` variant)."""

    laws: set = set()

    def probabilities(self, vector) -> dict[str, float]:
        return dict.fromkeys(self.laws, 1.0)


class KnnLaws:
    """P(law) from the question memory: the laws of the `m` nearest training questions, weighted by cosine ** p
    (the `lknn=M` variant; `lknn_p`), optionally mixed with a trained law model (`lmix`: its share)."""

    def __init__(self, index: DenseIndex, m: int, p: float, model=None, mix: float = 0.0, floor: float = 0.0):
        self.index, self.m, self.p, self.model, self.mix, self.floor = index, m, p, model, mix, floor

    def probabilities(self, vector) -> dict[str, float]:
        votes = self.index.votes(vector, self.m, self.p, self.floor)
        per_law: dict[str, float] = {}
        for key, vote in votes.items():
            per_law[key[0]] = per_law.get(key[0], 0.0) + vote
        total = sum(per_law.values()) or 1.0
        out = {law: v / total * (1 - self.mix) for law, v in per_law.items()}
        if self.model is not None and self.mix:
            for law, p in self.model.probabilities(vector).items():
                out[law] = out.get(law, 0.0) + self.mix * p
        return out


class CaseKnnLaws:
    """P(law) from the question memory with a gate on the kind of question (session 33):
    - `lsrc=1`: only the exam cases among the memory vote (case-style training questions);
    - `lgate=T`: the law stage acts only when the case-style share of the m nearest training questions' vote mass
      (cosine ** p) is at least T — i.e. when the question's neighbours are exam cases, as for judgment facts;
    - `labs=1`: P = the law's vote mass ÷ m (each of the m neighbours at most 1) instead of its share: weak or
      scattered neighbours lift little."""

    def __init__(self, index: DenseIndex, m: int, p: float, source_only: bool, gate: float, absolute: bool,
                 agree: float = 0.0):
        self.index, self.m, self.p, self.gate, self.absolute, self.agree = index, m, p, gate, absolute, agree
        self.rows = np.flatnonzero(index.memory_case) if source_only else np.arange(len(index.memory))
        self.gated = 0
        self.asked = 0

    def probabilities(self, vector) -> dict[str, float]:
        self.asked += 1
        memory = self.index.memory
        if self.gate:
            sims = memory @ vector
            m = min(self.m, len(sims))
            near = np.argpartition(-sims, m - 1)[:m]
            mass = np.clip(sims[near], 0, None) ** self.p
            if mass.sum() <= 0 or mass[self.index.memory_case[near]].sum() / mass.sum() < self.gate:
                return {}
        self.gated += 1
        sims = memory[self.rows] @ vector
        m = min(self.m, len(sims))
        per_law: dict[str, float] = {}
        for n in np.argpartition(-sims, m - 1)[:m]:
            if sims[n] <= 0:
                continue
            keys = self.index.memory_keys[self.rows[n]]
            share = float(sims[n]) ** self.p / len(keys)
            for key in keys:
                per_law[key[0]] = per_law.get(key[0], 0.0) + share
        mass = sum(per_law.values()) or 1.0
        if self.agree and max(per_law.values(), default=0.0) / mass < self.agree:
            self.gated -= 1
            return {}
        total = self.m if self.absolute else mass
        return {law: v / total for law, v in per_law.items()}


class NgramLaws:
    """P(law | question) from a linear softmax classifier over the question's character 1-2-grams (tf-idf, unit
    length), trained on the real questions alone (this process's pairs: the tuning ones) → their articles' laws
    (the `nclf=1` variant; session 33). `nadj=A` removes the law prior by logit adjustment (logit − A · log
    prior), `nlaw=1` adds one sentence and the heading of every statute article of the KB as training rows
    (so that laws the real questions hardly cite have a row), `nep` epochs (default 8)."""

    def __init__(self, store, variant: dict, seed: int = 0):
        import torch
        from collections import Counter

        from lawtune.kb.encoder import ngrams

        articles = store.current_articles()
        catalog = store.catalog()
        names = LawNames([*catalog.versions, *catalog.repealed])
        lookup = {(a.law_full, a.article, a.sub): n for n, a in enumerate(articles)}
        rows = [(q, sorted({articles[g].law_full for g in golds})) for q, golds in
                pairs_module.real_pairs(lookup, names)]
        if variant.get("nlaw"):
            index = {(a.law_full, a.article, a.sub): n for n, a in enumerate(articles)}
            rows += [(q, [articles[g[0]].law_full]) for q, g in pairs_module.law_pairs(articles, index, names, 0)
                     if len(g) == 1 and pairs_module.STATUTE_RE.match(articles[g[0]].law_full or "")]
        self.laws = sorted({law for _, laws in rows for law in laws})
        law_id = {law: n for n, law in enumerate(self.laws)}
        documents = Counter()
        grams = [Counter(ngrams(q)) for q, _ in rows]
        for counts in grams:
            documents.update(counts.keys())
        self.vocab = {g: n for n, g in enumerate(sorted(g for g, c in documents.items() if c >= 2))}
        self.idf = np.log(len(rows) / np.array([documents[g] for g in sorted(self.vocab, key=self.vocab.get)]))
        prior = np.full(len(self.laws), 1e-3)
        for _, laws in rows:
            for law in laws:
                prior[law_id[law]] += 1.0 / len(laws)
        self.log_prior = np.log(prior / prior.sum()).astype(np.float32)
        self.adjust = float(variant.get("nadj", 0.0))
        ids, weights, offsets = [], [], []
        for counts in grams:
            offsets.append(len(ids))
            bag = self._bag(counts)
            ids += bag[0]
            weights += bag[1]
        torch.manual_seed(seed)
        # with the statute rows (nlaw) the table is large: sparse rows and SparseAdam, no L2 (a step touches only its
        # batch's n-grams)
        sparse = bool(variant.get("nlaw"))
        bag_layer = torch.nn.EmbeddingBag(len(self.vocab), len(self.laws), mode="sum", sparse=sparse)
        torch.nn.init.zeros_(bag_layer.weight)
        bias = torch.nn.Parameter(torch.zeros(len(self.laws)))
        rate = float(variant.get("nlr", 0.05))
        optimizers = ([torch.optim.SparseAdam(list(bag_layer.parameters()), lr=rate), torch.optim.Adam([bias], lr=rate)]
                      if sparse else [torch.optim.Adam([*bag_layer.parameters(), bias], lr=rate)])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        ids_t, weights_t = torch.tensor(ids), torch.tensor(weights, dtype=torch.float32)
        offsets_t = torch.tensor(offsets + [len(ids)])
        targets = torch.zeros(len(rows), len(self.laws))
        for n, (_, laws) in enumerate(rows):
            for law in laws:
                targets[n, law_id[law]] = 1.0 / len(laws)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(int(variant.get("nep", 8))):
            order = torch.randperm(len(rows), generator=generator)
            for start in range(0, len(rows), 256):
                batch = order[start:start + 256]
                spans = [torch.arange(offsets_t[b], offsets_t[b + 1]) for b in batch.tolist()]
                flat = torch.cat(spans)
                batch_offsets = torch.tensor([0] + [len(x) for x in spans[:-1]]).cumsum(0)
                logits = bag_layer(ids_t[flat], batch_offsets, per_sample_weights=weights_t[flat]) + bias
                loss = -(targets[batch] * torch.log_softmax(logits, -1)).sum(-1).mean()
                if not sparse:
                    loss = loss + float(variant.get("nl2", 1e-5)) * bag_layer.weight.pow(2).sum()
                for optimizer in optimizers:
                    optimizer.zero_grad()
                loss.backward()
                for optimizer in optimizers:
                    optimizer.step()
        torch.set_num_threads(threads)
        self.weight = bag_layer.weight.detach().numpy()
        self.bias = bias.detach().numpy()
        self.query = ""
        print(f"n-gram law classifier: {len(rows)} rows, {len(self.laws)} laws, {len(self.vocab)} n-grams")

    def _bag(self, counts) -> tuple[list[int], list[float]]:
        ids = [self.vocab[g] for g in counts if g in self.vocab]
        weights = np.array([(1 + np.log(counts[g])) * self.idf[self.vocab[g]] for g in counts if g in self.vocab])
        norm = float(np.linalg.norm(weights)) or 1.0
        return ids, (weights / norm).tolist()

    def probabilities(self, vector=None) -> dict[str, float]:
        from collections import Counter

        from lawtune.kb.encoder import ngrams

        ids, weights = self._bag(Counter(ngrams(self.query)))
        logits = self.bias + (np.asarray(weights, np.float32) @ self.weight[ids] if ids else 0.0)
        logits = logits - self.adjust * self.log_prior
        logits = np.exp(logits - logits.max())
        logits /= logits.sum()
        return dict(zip(self.laws, logits.tolist()))


class Sharpened:
    """P(law) ** power (not renormalised): a diffuse guess lifts little, a confident one nearly as much as before
    (the `lpow` variant)."""

    def __init__(self, model, power: float):
        self.model, self.power = model, power

    def probabilities(self, vector) -> dict[str, float]:
        return {law: p ** self.power for law, p in self.model.probabilities(vector).items()}


class Debiased:
    """max(0, P(law | question) − the model's mean P(law) over the memory's training questions): only a law the
    question points to more than the typical training question lifts (the `lprior` variant). Without it any law
    stage trained on these pairs is mostly a 民法典 prior."""

    def __init__(self, model, index: DenseIndex):
        self.model = model
        totals: dict[str, float] = {}
        for row in index.memory:
            for law, p in model.probabilities(row).items():
                totals[law] = totals.get(law, 0.0) + p
        self.prior = {law: total / max(len(index.memory), 1) for law, total in totals.items()}

    def probabilities(self, vector) -> dict[str, float]:
        return {law: p - self.prior.get(law, 0.0) for law, p in self.model.probabilities(vector).items()
                if p > self.prior.get(law, 0.0)}


_LAW_MODELS: dict = {}
NOTES: list[str] = []  # what the last evaluate() saw of its law stage, printed under its summary


def law_model(store, index: DenseIndex, variant: dict, name: str) -> lawstage.LawModel:
    """The law stage trained on this process's pairs (the tuning ones) with the index's encoder; cached by name."""
    key = (name, tuple(sorted((k, v) for k, v in variant.items() if k in LAW_KEYS)))
    if key not in _LAW_MODELS:
        articles = store.current_articles()
        catalog = store.catalog()
        names = LawNames([*catalog.versions, *catalog.repealed])
        start = time.perf_counter()
        with Settings(variant):
            pairs = pairs_module.training_pairs(articles, names)
            extra = int(variant.get("lreal", 1)) - 1
            if extra > 0:
                lookup = {(a.law_full, a.article, a.sub): n for n, a in enumerate(articles)}
                pairs += list(pairs_module.real_pairs(lookup, names)) * (extra * pairs_module.REAL_REPEAT)
            _LAW_MODELS[key] = lawstage.train_law_model(index.encoder, pairs, [a.law_full for a in articles])
        print(f"law model {key}: {len(_LAW_MODELS[key].laws)} laws, {len(pairs)} pairs, "
              f"{time.perf_counter() - start:.0f} s")
    return _LAW_MODELS[key]


def evaluate(store, sets: dict, golds: dict, cands: dict, index: DenseIndex, variant: dict,
             encoder_name: str = "stored") -> dict[str, SetScore]:
    retriever = Retriever(store)
    retriever.search("预热", k=1)
    memory = Memory(store, index) if FUSE_KEYS & set(variant) - {"lawclf"} else None
    if memory is not None and variant.get("expand"):
        index = memory.expanded(index, variant["expand"])
    retriever.dense = index
    prototype = bool(FUSE_KEYS & set(variant))
    classifier = None
    if variant.get("lawclf"):
        start = time.perf_counter()
        classifier = LawClassifier(store, index)
        print(f"law classifier: {len(classifier.laws)} laws, {time.perf_counter() - start:.0f} s")
    oracle = OracleLaws() if variant.get("oracle") else None
    index.law_model = (oracle if oracle is not None
                       else law_model(store, index, variant, encoder_name)
                       if variant.get("lw") and not variant.get("nclf")
                       and (not variant.get("lknn") or variant.get("lmix")) else None)
    if variant.get("nclf"):
        if variant.get("lprior"):
            raise SystemExit("nclf reads the question's text, not its vector: remove its prior with nadj, not lprior")
        key = ("nclf", tuple(sorted((k, v) for k, v in variant.items() if k.startswith("n") and k != "nadj")))
        if key not in _LAW_MODELS:
            _LAW_MODELS[key] = NgramLaws(store, variant)
        index.law_model = _LAW_MODELS[key]
        index.law_model.adjust = float(variant.get("nadj", 0.0))
    if variant.get("lknn") and {"lsrc", "lgate", "labs", "lagree"} & set(variant):
        index.law_model = CaseKnnLaws(index, int(variant["lknn"]), float(variant.get("lknn_p", 3.0)),
                                      bool(variant.get("lsrc")), float(variant.get("lgate", 0.0)),
                                      bool(variant.get("labs")), float(variant.get("lagree", 0.0)))
    elif variant.get("lknn"):
        index.law_model = KnnLaws(index, int(variant["lknn"]), float(variant.get("lknn_p", 3.0)), index.law_model,
                                  float(variant.get("lmix", 0.0)), float(variant.get("lknn_f", 0.0)))
    if variant.get("lprior") and index.law_model is not None:
        index.law_model = Debiased(index.law_model, index)
    gate = index.law_model.model if isinstance(index.law_model, Debiased) else index.law_model
    gate = gate if isinstance(gate, CaseKnnLaws) else None
    acted: dict[str, str] = {}
    base_model = index.law_model.model if isinstance(index.law_model, Debiased) else index.law_model
    ngram = base_model if isinstance(base_model, NgramLaws) else None
    law_top1: dict[str, int] = {}
    if variant.get("lpow") and index.law_model is not None:
        index.law_model = Sharpened(index.law_model, float(variant["lpow"]))
    if variant.get("ldis"):  # the stage acts only where the top `ldis` candidates span more than one law
        top_n = int(variant["ldis"])
        stage = retriever._law_stage
        counts = {"acted": 0, "asked": 0}

        def disagreeing(vector, scored):
            counts["asked"] += 1
            best = sorted(scored, key=lambda pair: pair[0], reverse=True)[:top_n]
            laws = {entry.item.law_full if isinstance(entry, retrieval.Hit) else entry[0] for _, entry in best}
            if len(laws) < 2:
                return scored
            counts["acted"] += 1
            return stage(vector, scored)

        retriever._law_stage = disagreeing
    settings = dict(variant)
    if oracle is not None:
        settings["lw"] = variant["oracle"]
    mode = retrieval.LAW_MODE
    retrieval.LAW_MODE = "add" if variant.get("ladd") else "mult"
    scores = {name: SetScore(name) for name in sets}
    try:
        with Settings(settings):
            for name, records in sets.items():
                if gate is not None:
                    gate.gated = gate.asked = 0
                for r in records:
                    exact, ranked = cands[(name, r["id"])]
                    if ngram is not None:
                        ngram.query = r["question"]
                        gold_laws = {g.law_full for g in golds[(name, r["id"])] if g.law_full}
                        probabilities = ngram.probabilities()
                        top = max(probabilities, key=probabilities.get) if probabilities else None
                        law_top1[name] = law_top1.get(name, 0) + (top in gold_laws)
                    if oracle is not None:
                        oracle.laws = {g.law_full for g in golds[(name, r["id"])] if g.law_full}
                    start = time.process_time()
                    if not index:
                        fused = ranked
                    elif prototype:
                        fused = fuse(retriever, r["question"], ranked, K, variant, memory, set(), classifier)
                    else:
                        fused = retriever._fuse_dense(r["question"], ranked, K, ("article", "qa"))
                    seen = {Retriever._key(h) for h in exact}
                    hits = (exact + [h for h in fused if Retriever._key(h) not in seen])[:K]
                    score_question(scores[name], golds[(name, r["id"])], hits, (time.process_time() - start) * 1000)
                if gate is not None:
                    acted[name] = f"{gate.gated}/{gate.asked}"
    finally:
        retrieval.LAW_MODE = mode
        NOTES.clear()
        if law_top1:
            NOTES.append("n-gram law classifier top-1 law right: " + ", ".join(
                f"{n} {v / len(sets[n]):.3f}" for n, v in law_top1.items()))
        if variant.get("ldis"):
            NOTES.append(f"candidates' laws disagreed (stage acted) on {counts['acted']} of {counts['asked']}")
        if acted:
            NOTES.append("law stage acted on: " + ", ".join(f"{n} {v}" for n, v in acted.items()))
        index.law_model = None
    return scores


def summary(scores: dict[str, SetScore]) -> str:
    r5 = {n: s.recall[5] / s.questions for n, s in scores.items()}
    r100 = {n: s.recall[100] / s.questions for n, s in scores.items()}
    main = [r5[n] for n in SCORED if n in r5] or list(r5.values())
    law5 = {n: s.law_recall[5] / s.questions for n, s in scores.items()}
    cells = " ".join(f"{n.replace('lawbench_', '')} {r5[n]:.3f}/{r100[n]:.3f} (law {law5[n]:.2f})" for n in scores)
    return f"score {sum(main) / len(main):.4f} | {cells}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["base"])
    parser.add_argument("--stard", type=Path, required=True, help="an exported STARD snapshot (data/queries.json …)")
    parser.add_argument("--sets", type=Path, default=ROOT / "out" / "retrieval_sets")
    parser.add_argument("--only", nargs="+", default=list(TUNE_SETS))
    parser.add_argument("--laws", default=str(SHARED / "laws_lawrefbook"))
    parser.add_argument("--kb", type=Path, required=True, help="built here (with the tuning pairs) if missing")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kb-tune"), help="candidate cache, variant encoders")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--table", action="store_true", help="print the full table of each variant")
    parser.add_argument("--final", action="store_true",
                        help="the once-at-the-end reading: all pairs (no tuning slice held out), stard_dev allowed; "
                             "every variant from one BM25 pass over the given --kb (built by `kb build`)")
    parser.add_argument("--hold", action="store_true",
                        help="the once-at-the-end reading of this session's held-out slices (stard_hold, fakao_hold) "
                             "on the tuning build")
    args = parser.parse_args()
    if "stard_dev" in args.only and not args.final:
        raise SystemExit("stard_dev is the held-out set: read it once, at the end, with --final")
    if set(HOLD_SETS) & set(args.only) and not args.hold:
        raise SystemExit(f"{', '.join(HOLD_SETS)} are held out: read them once, at the end, with --hold")

    STARD[:] = [args.stard]
    print(f"CPU flags: {' '.join(f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if f in cpu_flags())}; "
          "float32")
    if not args.final:
        held = write_tune_sets(args.stard, args.sets)
        HELD[:] = held
        exclude_tune_pairs(held)
        print(f"{len(held)} tuning and held-out questions taken out of the pairs with their near-duplicates")
    if not args.kb.exists():
        start = time.perf_counter()
        print("build:", build([args.laws], args.kb), f"{time.perf_counter() - start:.0f} s wall")
    args.work.mkdir(parents=True, exist_ok=True)
    sets = read_sets(args.sets, args.only, args.limit)
    cache = args.work / f"candidates-{args.kb.stem}-{args.limit}.pkl"
    with open_store(args.kb) as store:
        catalog = store.catalog()
        names = LawNames([*catalog.versions, *catalog.repealed])
        golds = {(n, r["id"]): [resolve(store, catalog, names, g, r.get("reference", "")) for g in r["gold"]]
                 for n, records in sets.items() for r in records}
    cands = candidates(args.kb, sets, cache)
    if any(PSEUDO_KEYS & set(parse_variant(text)) for text in args.variants):
        PSEUDO[:] = pseudo_labels(args.kb, cache)
    dropped = getattr(pairs_module.real_pairs, "dropped", None)
    if dropped:  # counted while this process built the KB
        print(f"pairs dropped as tuning / held-out questions or near-duplicates: {len(set(dropped))}")
    with open_store(args.kb) as store:
        for text in args.variants:
            variant = parse_variant(text)
            if "ens" in variant:
                index, seconds = ensemble_variant(store, variant, args.work / f"encoders-{args.kb.stem}")
            else:
                index, seconds = train_variant(store, variant, args.work / f"encoders-{args.kb.stem}")
            if "memseed" in variant:
                seed = int(variant["memseed"])
                memory_index, _ = train_variant(store, {"seed": seed} if seed else {},
                                                args.work / f"encoders-{args.kb.stem}")
                index = SplitMemory(index, memory_index)
            encoder_name = "-".join(f"{k}={v}" for k, v in sorted(variant.items()) if k in TRAIN_KEYS) or "stored"
            scores = evaluate(store, sets, golds, cands, index, variant, encoder_name)
            print(f"{text:40s} {summary(scores)}" + (f" (trained {seconds:.0f} s)" if seconds else ""))
            for note in NOTES:
                print(f"    {note}")
            sys.stdout.flush()
            if args.table:
                print_table(scores.values())
    if args.final:
        print("(query times above: step 8 alone; kb_retrieval_sets.py / kb_retrieval.py time whole searches)")


if __name__ == "__main__":
    main()
