"""What citation-constrained decoding costs per step: its logits processor against the answer-penalty one.

    .venv/bin/python benchmarks/cite_constrain_speed.py --tokenizer ~/.lawtune/models/gemma-3-270m --kb out/demo/kb.sqlite

No model: both processors see the same random logits of a batch (default 8 rows, the eval batch) over the
tokenizer's vocabulary, and an answer that writes 《中华人民共和国民法典》第一千零七十九条… token by token, so the
citation processor probes for references every step and opens a reference twice. Prints ms per step for each and
their ratio (the model's own step is not included: it is the same for both), with the CPU flags and dtype.

The same for the server's batcher (`serve --kb`): its token choice (`serving.engines.batch.pick_token`, penalties
included) for every sequence of the batch, with and without a `CiteGrammar` on each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from decoding_sweep import cpu_flags  # noqa: E402

ANSWER = ("根据《中华人民共和国民法典》第一千零七十九条的规定，夫妻一方要求离婚的，可以由有关组织进行调解或者直接向人民法院"
          "提起离婚诉讼。另见《民法典》第一千零八十条，完成离婚登记或者离婚判决书、调解书生效，即解除婚姻关系。")
CIVIL = "中华人民共和国民法典"


def per_step(make, ids, scores, prompt: int, repeats: int) -> float:
    """Best-of-`repeats` seconds per decoding step for a fresh processor fed the answer one token at a time."""
    best = float("inf")
    for _ in range(repeats):
        processor = make()
        started = time.perf_counter()
        for width in range(prompt + 1, ids.shape[1] + 1):
            processor(ids[:, :width], scores)
        best = min(best, (time.perf_counter() - started) / (ids.shape[1] - prompt))
    return best


def batcher_per_step(grammar, answer: list[int], scores, policy, stops, repeats: int) -> float:
    """Best-of-`repeats` seconds per step of `pick_token` over a batch of sequences writing `answer` (the
    'model' puts +100 on its next token), each with `grammar()` (None: no constraint)."""
    from lawtune.serving.engines.batch import Sequence, pick_token

    best = float("inf")
    for _ in range(repeats):
        rows = [Sequence(prompt_ids=[0], decoding=policy, stop_ids=frozenset(stops), grammar=grammar())
                for _ in range(scores.shape[0])]
        started = time.perf_counter()
        for token in answer:
            for row, seq in enumerate(rows):
                logits = scores[row].clone()
                logits[token] += 100.0
                seq.generated.append(pick_token(logits, seq))
        best = min(best, (time.perf_counter() - started) / len(answer))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="a model folder (its tokenizer is used)")
    parser.add_argument("--kb", required=True, help="a knowledge base: its law names read the references")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from lawtune.kb.cite_constrain import CitationLogitsProcessor
    from lawtune.kb.rag import open_checker
    from lawtune.modeling.decoding import AnswerLogitsProcessor, DecodingPolicy
    from lawtune.modeling.loading import load_tokenizer

    tokenizer, names = load_tokenizer(args.tokenizer), open_checker(args.kb).names
    answer = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    prompt = [tokenizer.bos_token_id] * 16
    ids = torch.tensor([prompt + answer] * args.batch)
    scores = torch.randn(args.batch, len(tokenizer), generator=torch.Generator().manual_seed(0))
    stops, policy = [tokenizer.eos_token_id], DecodingPolicy()
    material = {CIVIL: ((1079, 0), (1080, 0), (1081, 0))}
    CitationLogitsProcessor(tokenizer, names, [material], len(prompt), stops, policy)  # tokenizer caches, untimed
    answer_s = cite_s = float("inf")
    for _ in range(args.repeats):  # interleaved, best of each: a shared machine's load hits both alike
        answer_s = min(answer_s, per_step(lambda: AnswerLogitsProcessor(policy, len(prompt), stops), ids, scores, len(prompt), 1))
        cite_s = min(cite_s, per_step(lambda: CitationLogitsProcessor(tokenizer, names, [material] * args.batch, len(prompt),
                                                                      stops, policy), ids, scores, len(prompt), 1))
    print(f"CPU flags: {cpu_flags()}; dtype float32 logits; batch {args.batch}; vocabulary {len(tokenizer):,}; "
          f"{len(answer)} answer tokens")
    print(f"answer penalties only:        {1000 * answer_s:7.2f} ms/step")
    print(f"+ citation constraint:        {1000 * cite_s:7.2f} ms/step")
    print(f"ratio constrained / penalties: {cite_s / answer_s:.2f}x")

    from lawtune.kb.cite_constrain import CiteGrammar
    from lawtune.modeling.grammar import ll_tokenizer

    ll = ll_tokenizer(tokenizer, stops)
    plain_s = grammar_s = float("inf")
    for _ in range(args.repeats):
        plain_s = min(plain_s, batcher_per_step(lambda: None, answer, scores, policy, stops, 1))
        grammar_s = min(grammar_s, batcher_per_step(lambda: CiteGrammar(ll, names, material, stops), answer, scores,
                                                    policy, stops, 1))
    print(f"server batcher (serve --kb), pick_token for {args.batch} sequences:")
    print(f"  penalties only:             {1000 * plain_s:7.2f} ms/step")
    print(f"  + CiteGrammar:              {1000 * grammar_s:7.2f} ms/step")
    print(f"  ratio:                      {grammar_s / plain_s:.2f}x")


if __name__ == "__main__":
    main()
