"""`lawtune eval MODEL_OR_RUN --data FILE.jsonl`: generation metrics, eval loss and MCQ accuracy.

    lawtune eval runs/demo --data out/demo/data/test.jsonl             # tuned (base + best adapter)
    lawtune eval runs/demo --base-only --data out/demo/data/test.jsonl # the same base, same template
    from lawtune.evaluation.evaluate import run; metrics = run("runs/demo", "test.jsonl")

Writes OUT/predictions.jsonl (prompt, prediction, reference, per-sample scores) and OUT/metrics.json
(model, data hash, generation settings, metrics, eval loss, MCQ). Greedy decoding and fixed batching
make it reproducible: the same command twice gives the same metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lawtune.data.conversations import Example, read_examples
from lawtune.bundled import benchmarks_dir
from lawtune.errors import LawtuneError
from lawtune.evaluation.generation import GenerationSettings, generate
from lawtune.evaluation.metrics import distribution, loops, score_pair, summarize
from lawtune.evaluation.scoring import eval_loss, mcq_accuracy, read_mcq
from lawtune.evaluation.settings import DEFAULT_MCQ, EvalOptions
from lawtune.fsutil import atomic_open, atomic_write_json, sha256_file
from lawtune.modeling.runs import EVAL_DIR, is_run_dir

BENCHMARKS_DIR = benchmarks_dir()  # shipped in the package (also reachable as data/benchmarks in a checkout)
MIN_ANSWER_BUDGET = 384  # new tokens: an answer budget below the references' lengths hides whether a model stops


def resolve_mcq(names_or_paths: list[str]) -> list[Path]:
    """`jecqa_single` → data/benchmarks/jecqa_single.jsonl; anything else is a path."""
    paths = []
    for item in names_or_paths:
        bundled = BENCHMARKS_DIR / f"{item}.jsonl"
        path = bundled if bundled.is_file() else Path(item)
        if not path.is_file():
            raise LawtuneError(f"MCQ set {item!r} not found: use {', '.join(DEFAULT_MCQ)} or the path of an MCQ JSONL file")
        paths.append(path)
    return paths


def resolve_data(data: str | Path) -> Path:
    """A conversations file path, or the name of a bundled one (`lawbench_3-8`)."""
    path = Path(data)
    bundled = BENCHMARKS_DIR / f"{data}.jsonl"
    return bundled if not path.exists() and bundled.is_file() else path


def default_out_dir(spec: str | Path, data: Path, base_only: bool) -> Path:
    """RUN/eval/<data>[-base] for a run folder, else out/eval/<model>-<data>."""
    suffix = "-base" if base_only else ""
    if is_run_dir(Path(spec)):
        return Path(spec) / EVAL_DIR / f"{data.stem}{suffix}"
    return Path("out") / EVAL_DIR / f"{Path(str(spec)).name}-{data.stem}"


def answer_budget(reference_tokens: list[int], floor: int = MIN_ANSWER_BUDGET) -> int:
    """New-token budget that fits the references: their 95th-percentile length (+ the end token), ≥ `floor`.

    Rounded up to a multiple of 32 so that nearby data sets get the same budget.
    """
    ordered = sorted(reference_tokens) or [0]
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return max(floor, -(-(p95 + 1) // 32) * 32)


def evaluate_loaded(
    loaded: Any, examples: list[Example], settings: GenerationSettings, *, mcq_paths: list[Path] = (),
    mcq_limit: int | None = None, max_output_length: int = 512, label: str = "", rag: Any = None, checker: Any = None,
    kb_in_prompt: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run every measurement on an already loaded model: (metrics record, prediction rows).

    With `rag` (lawtune.kb.rag.Rag) each question is asked in the RAG format with the articles retrieved for
    it (loss too is scored on that prompt); with `rag` or `checker` every answer gets citation verdicts and the
    grounding metrics (lawtune.kb.grounding). `kb_in_prompt=False`: the same checks, asked without the articles
    (compare's "tuned, no KB" column)."""
    from dataclasses import replace

    timing: dict[str, float] = {}
    if not examples:  # a tool set only (lawtune.evaluation.tool_eval): no text answers to score here
        if settings.max_new_tokens is None:
            settings = replace(settings, max_new_tokens=MIN_ANSWER_BUDGET)
        return _record(loaded, settings, max_output_length, {}, {}, _mcq(loaded, mcq_paths, mcq_limit, label, timing),
                       timing), []
    asked, retrieved, hit_keys, cite = examples, [None] * len(examples), None, None
    if rag is not None and kb_in_prompt:
        from lawtune.kb.grounding import hit_key
        from lawtune.kb.rag import hit_record

        augmented = [rag.augment(e.prompt) for e in examples]
        asked = [Example([*a.messages, {"role": "assistant", "content": e.reference}], e.meta)
                 for a, e in zip(augmented, examples)]
        retrieved = [a.references() for a in augmented]
        hit_keys = [[hit_key(h) for h in a.hits] for a in augmented]
        cite = rag.constraint([a.hits for a in augmented])  # None with --no-cite-constraint
    if rag is not None:
        checker = checker or rag.checker
    reference_tokens = [len(loaded.tokenizer(e.reference, add_special_tokens=False)["input_ids"]) for e in examples]
    if settings.max_new_tokens is None:
        settings = replace(settings, max_new_tokens=answer_budget(reference_tokens))
    started = time.perf_counter()
    outputs = generate(loaded, [e.prompt for e in asked], settings, description=f"{label} generating".strip(), cite=cite)
    timing["generation_s"] = round(time.perf_counter() - started, 1)
    # the answer a reader sees: with --kb, the retrieved articles it repeats named (lawtune.kb.attribution)
    attributions = ([rag.attribute(o.text, a.hits) for o, a in zip(outputs, augmented)]
                    if rag is not None and kb_in_prompt else None)
    texts = [a.text for a in attributions] if attributions is not None else [o.text for o in outputs]

    started = time.perf_counter()
    loss = eval_loss(loaded, asked, settings.max_input_length, max_output_length)
    stop_probs = loss.pop("stop_probs")
    timing["loss_s"] = round(time.perf_counter() - started, 1)

    predictions = []
    for example, output, text, ref_tokens, stop_prob in zip(examples, outputs, texts, reference_tokens, stop_probs):
        scores = {name: round(value, 4) for name, value in score_pair(text, example.reference).items()}
        # the answer a reader sees (a repetition stop cuts tokens that were generated): its length in tokens
        answer_tokens = len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
        predictions.append({"prompt": example.question, "prediction": text, "reference": example.reference,
                            "ended": output.ended, "finish_reason": getattr(output, "finish_reason", None),
                            "loops": loops(output.text), "new_tokens": output.new_tokens,
                            "answer_tokens": answer_tokens, "reference_tokens": ref_tokens,
                            "length_ratio": round(answer_tokens / max(ref_tokens, 1), 4),
                            "stop_prob": None if stop_prob is None else round(stop_prob, 6),
                            "scores": scores, "meta": example.meta})
    for row, hits in zip(predictions, retrieved):
        if hits is not None:
            row["retrieved"] = hits  # law, article, sub, score of each article put in the prompt
    for row, output, attribution in zip(predictions, outputs, attributions or []):
        row["quoted"] = [hit_record(h) for h in attribution.quoted]  # retrieved articles the answer repeats
        if attribution.added:
            row["model_text"] = output.text  # before the line naming them
    metrics = summarize(texts, [e.reference for e in examples], [o.ended for o in outputs])
    if attributions is not None:
        metrics["attributed_pct"] = round(100 * sum(bool(a.added) for a in attributions) / max(len(texts), 1), 2)
    reasons = [row["finish_reason"] for row in predictions if row["finish_reason"]]
    if reasons:  # how generation ended: stop (on its own), length (budget), repetition (cut by the repetition stop)
        metrics["finish_reasons_pct"] = {reason: round(100 * reasons.count(reason) / len(reasons), 2)
                                         for reason in sorted(set(reasons))}
    metrics["length_ratio"] = distribution([row["length_ratio"] for row in predictions])
    metrics["stop_prob"] = distribution([p for p in stop_probs if p is not None])
    if checker is not None:
        from lawtune.kb.rag import citation_metrics

        from lawtune.kb.grounding import ArticleKeys, grounding_metrics

        verdicts, cited = citation_metrics(checker, texts)
        for row, row_verdicts in zip(predictions, verdicts):
            row["citations"] = row_verdicts
        metrics.update(cited)
        keys = ArticleKeys(checker, rag.store if rag is not None else None)
        grounding, grounded = grounding_metrics(keys, texts, [e.reference for e in examples], hit_keys)
        for row, row_grounding in zip(predictions, grounding):
            row["grounding"] = row_grounding
        metrics.update(grounded)

    mcq = _mcq(loaded, mcq_paths, mcq_limit, label, timing)
    return _record(loaded, settings, max_output_length, metrics, loss, mcq, timing), predictions


def _mcq(loaded: Any, mcq_paths: list[Path], mcq_limit: int | None, label: str, timing: dict[str, float]) -> dict[str, Any]:
    mcq: dict[str, Any] = {}
    for path in mcq_paths:
        started = time.perf_counter()
        items = read_mcq(path, mcq_limit)
        result = mcq_accuracy(loaded, items, description=f"{label} MCQ {path.stem}".strip())
        mcq[path.stem] = {"file": str(path), "sha256": sha256_file(path), **result}
        timing[f"mcq_{path.stem}_s"] = round(time.perf_counter() - started, 1)
    return mcq


def _record(loaded: Any, settings: GenerationSettings, max_output_length: int, metrics: dict[str, Any],
            loss: dict[str, Any], mcq: dict[str, Any], timing: dict[str, float]) -> dict[str, Any]:
    return {
        "model": {"name": loaded.name, "base_path": str(loaded.base_path),
                  "adapter_path": str(loaded.adapter_path) if loaded.adapter_path else None},
        "generation": settings.record(),
        "max_output_length": max_output_length,
        "metrics": metrics,
        "loss": loss,
        "mcq": mcq,
        "timing": timing,  # the only part that differs between two identical runs
    }


def write_outputs(out_dir: Path, record: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
    import json

    with atomic_open(out_dir / "predictions.jsonl") as handle:
        for row in predictions:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_json(out_dir / "metrics.json", record)


def run(spec: str | Path, data: str | Path, out_dir: str | Path | None = None, *, options: EvalOptions = EvalOptions(),
        settings: GenerationSettings | None = None) -> dict[str, Any]:
    """Evaluate one model on one conversations file; returns the metrics record written to metrics.json.

    `options` (`EvalOptions`, the flags of `lawtune eval`): with `kb`, ask in the RAG format with `kb_k`
    retrieved articles and check every answer's citations; `check_kb`: check citations against this KB instead
    (alone: no retrieval). `tool_data`: a tool set measured too (lawtune.evaluation.tool_eval); `data` itself is
    one when its records carry `tools`. `settings`: how the answers are generated."""
    from lawtune.evaluation import tool_eval
    from lawtune.kb.rag import open_eval_kb
    from lawtune.modeling.loading import load_model

    settings, limit = settings or GenerationSettings(), options.limit
    data = resolve_data(data)
    tool_set = tool_eval.open_tool_set(data, options.tool_data, options.tools,
                                       options.tool_limit if options.tool_data else limit)
    examples = [] if tool_set and tool_set.path == data else list(read_examples(data, limit))
    mcq_paths = resolve_mcq(list(DEFAULT_MCQ) if options.mcq is None else options.mcq)
    out = Path(out_dir) if out_dir else default_out_dir(spec, data, options.base_only)
    # a bad KB fails before the model loads
    rag, checker, kb_record = open_eval_kb(options.kb, options.check_kb, options.kb_k, options.kb_chars,
                                           options.cite_constraint, options.attribute)
    loaded = load_model(spec, base_only=options.base_only, dtype=options.dtype, merge=True)
    record, predictions = evaluate_loaded(loaded, examples, settings, mcq_paths=mcq_paths, mcq_limit=options.mcq_limit,
                                          max_output_length=options.max_output_length, rag=rag, checker=checker)
    if rag is not None:
        rag.close()
    record["model"]["spec"] = str(spec)
    record["model"]["base_only"] = options.base_only
    record["data"] = {"path": str(data), "sha256": sha256_file(data), "count": len(examples), "limit": limit}
    if kb_record is not None:
        record["kb"] = kb_record
    if tool_set is not None:
        tool_set.measure(loaded, settings, record, out)  # before write_outputs: its metrics join the record
    write_outputs(out, record, predictions)
    record["out_dir"] = str(out)
    return record
