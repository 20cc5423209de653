"""Eval-loss and MCQ log-probabilities projected 32 positions at a time vs from the whole logits: equal? at what memory?

    .venv/bin/python benchmarks/scoring_chunks.py --model runs/demo --data out/demo/data/test.jsonl
    .venv/bin/python benchmarks/scoring_chunks.py --model default --data out/demo/data/test.jsonl --questions 4 --mcq-limit 6

`lawtune.evaluation.scoring` projects the scored positions' hidden states onto the vocabulary in chunks of
`LOGPROB_CHUNK_ROWS` with the model's own head; before, the model returned every scored position's float32 logits
and their log-softmax was taken at once (the path a model with logit post-processing still takes). This runs both
on the same batches (MCQ options of the first `--mcq-limit` JEC-QA questions as one batch; the answers of the first
`--questions` test conversations as another), counts the log-probabilities that are bit-for-bit identical, and
prints each path's peak RSS above its start (`lawtune.memory`). Reads only local files.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="run folder, model folder or imported model name")
    parser.add_argument("--data", required=True, help="conversations JSONL (e.g. the demo's test.jsonl)")
    parser.add_argument("--questions", type=int, default=4, help="test conversations whose answers are scored")
    parser.add_argument("--mcq-limit", type=int, default=6, help="JEC-QA questions whose options are scored")
    args = parser.parse_args()

    from lawtune.data.conversations import read_examples
    from lawtune.evaluation import scoring
    from lawtune.evaluation.evaluate import resolve_mcq
    from lawtune.memory import Phases
    from lawtune.modeling.chat import IGNORE_INDEX
    from lawtune.modeling.loading import load_model

    loaded = load_model(args.model, merge=True)
    tokenizer, chat = loaded.tokenizer, loaded.chat
    prompts, options = [], []
    for item in scoring.read_mcq(resolve_mcq(["jecqa_single"])[0], args.mcq_limit):
        prompt = chat.encode_prompt([{"role": "user", "content": item.question}])
        for text in item.options.values():
            prompts.append(prompt)
            options.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    encoded = [chat.encode_example(e.messages, 512, 512) for e in read_examples(args.data, args.questions)]
    encoded = [e for e in encoded if e is not None]
    starts = [next(i for i, label in enumerate(e.labels) if label != IGNORE_INDEX) for e in encoded]
    batches = {"MCQ options": (prompts, options),
               "eval-loss answers": ([e.input_ids[:s] for e, s in zip(encoded, starts)],
                                     [e.input_ids[s:] for e, s in zip(encoded, starts)])}
    phases, chunk = Phases(), scoring.LOGPROB_CHUNK_ROWS
    print(f"{loaded.name}: plain head {'yes' if scoring._plain_head(loaded.model) is not None else 'no (whole logits either way)'}")
    for name, (batch_prompts, continuations) in batches.items():
        with phases(f"{name}, chunks of {chunk}"):
            chunked = scoring._continuation_logprobs(loaded.model, batch_prompts, continuations, tokenizer.pad_token_id)
        plain_head = scoring._plain_head
        scoring._plain_head, scoring.LOGPROB_CHUNK_ROWS = (lambda model: None), 10**9  # the whole logits at once
        try:
            with phases(f"{name}, whole logits"):
                whole = scoring._continuation_logprobs(loaded.model, batch_prompts, continuations, tokenizer.pad_token_id)
        finally:
            scoring._plain_head, scoring.LOGPROB_CHUNK_ROWS = plain_head, chunk
        pairs = [(a, b) for row_a, row_b in zip(chunked, whole) for a, b in zip(row_a, row_b)]
        identical = sum(a == b for a, b in pairs)
        print(f"{name}: {len(pairs)} log-probabilities, {identical} bit-for-bit identical, "
              f"max |difference| {max(abs(a - b) for a, b in pairs):.3g}")
    for record in phases.records():
        print(f"  {record['name']}: peak {record['peak_rss_mib'] - record['rss_start_mib']:,} MiB above the start")


if __name__ == "__main__":
    main()
