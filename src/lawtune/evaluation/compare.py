"""`lawtune compare BASE RUN --data test.jsonl`: both models, same questions, same settings, one report.

    lawtune compare base runs/demo --data out/demo/data/test.jsonl     # `base` = the run's own base model
    lawtune compare default runs/demo --data test.jsonl -o out/compare
    from lawtune.evaluation.compare import run; result = run("base", "runs/demo", "test.jsonl")

The base model is formatted with the run's stored chat template, so the only difference between the
two columns is the adapter. Models are evaluated one after the other (one in memory at a time).
Writes OUT/{base,tuned}/{metrics.json,predictions.jsonl}, OUT/report.md, OUT/report.html. With `--kb` both
sides are asked with the retrieved articles, and the tuned model is asked once more without them
(OUT/tuned-no-kb/, no MCQ: it does not depend on the KB), a third column of the report: base + KB, tuned alone,
tuned + KB side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lawtune.data.conversations import read_examples
from lawtune.errors import LawtuneError
from lawtune.evaluation.evaluate import evaluate_loaded, resolve_data, resolve_mcq, write_outputs
from lawtune.evaluation.gate import Gate, write_verdict
from lawtune.evaluation.generation import GenerationSettings
from lawtune.evaluation.report import write_report
from lawtune.evaluation.settings import DEFAULT_MCQ, EvalOptions
from lawtune.fsutil import sha256_file
from lawtune.modeling.runs import COMPARE_DIR, RUN_INFO, TEMPLATE_FILE, is_run_dir


NO_KB = "tuned-no-kb"  # with --kb: the tuned model asked again without the articles (OUT/tuned-no-kb/)


def _load_base(base: str, run_dir: Path, dtype: str) -> Any:
    from lawtune.modeling.loading import load_model

    if base == "base":
        return load_model(run_dir, base_only=True, dtype=dtype)
    if is_run_dir(Path(base)):  # another run: its own template and adapter
        return load_model(base, dtype=dtype, merge=True)
    return load_model(base, dtype=dtype, template=str(run_dir / TEMPLATE_FILE))


def run(base: str, run_dir: str | Path, data: str | Path, out_dir: str | Path | None = None, *,
        options: EvalOptions = EvalOptions(), settings: GenerationSettings | None = None,
        gate: Gate | None = None) -> dict[str, Any]:
    """Evaluate BASE and RUN on `data` with identical settings; write both results and the report.

    With a `gate` that sets thresholds, the verdict goes into the report, the result (`gate`) and
    RUN/quality_gate.json, which `lawtune serve` reads. `options` as `lawtune eval` (`base_only` aside): with
    `kb` / `check_kb` both sides get the same retrieved articles and the report shows the citation metrics;
    with `tool_data` / `tools` both sides answer the same tool questions (lawtune.evaluation.tool_eval).
    """
    from lawtune.evaluation.tool_eval import open_tool_set
    from lawtune.kb.rag import open_eval_kb
    from lawtune.memory import release_memory
    from lawtune.modeling.loading import load_model

    run_dir, data = Path(run_dir), resolve_data(data)
    if not is_run_dir(run_dir):
        raise LawtuneError(f"{run_dir} is not a run folder (no {RUN_INFO}); train one with `lawtune train CONFIG`")
    settings, limit, dtype = settings or GenerationSettings(), options.limit, options.dtype
    tool_set = open_tool_set(data, options.tool_data, options.tools, options.tool_limit if options.tool_data else limit)
    examples = [] if tool_set and tool_set.path == data else list(read_examples(data, limit))
    mcq_paths = resolve_mcq(list(DEFAULT_MCQ) if options.mcq is None else options.mcq)
    out = Path(out_dir) if out_dir else run_dir / COMPARE_DIR
    data_record = {"path": str(data), "sha256": sha256_file(data), "count": len(examples), "limit": limit}
    rag, checker, kb_record = open_eval_kb(options.kb, options.check_kb, options.kb_k, options.kb_chars,
                                           options.cite_constraint, options.attribute)

    results, tool_rows = {}, {}
    for side in ("base", "tuned"):
        loaded = _load_base(base, run_dir, dtype) if side == "base" else load_model(run_dir, dtype=dtype, merge=True)
        record, predictions = evaluate_loaded(loaded, examples, settings, mcq_paths=mcq_paths, mcq_limit=options.mcq_limit,
                                              max_output_length=options.max_output_length, label=side, rag=rag,
                                              checker=checker)
        record["model"]["spec"] = base if side == "base" else str(run_dir)
        record["data"] = data_record
        if kb_record is not None:
            record["kb"] = kb_record
        if tool_set is not None:
            tool_rows[side] = tool_set.measure(loaded, settings, record, out / side, label=side)
        write_outputs(out / side, record, predictions)
        results[side] = (record, predictions)
        if side == "tuned" and rag is not None:  # the same model without the articles: what the KB adds
            record, predictions = evaluate_loaded(loaded, examples, settings, max_output_length=options.max_output_length,
                                                  label=f"{NO_KB} (no KB)", rag=rag, checker=checker, kb_in_prompt=False)
            record["model"]["spec"], record["data"], record["kb"] = str(run_dir), data_record, kb_record
            write_outputs(out / NO_KB, record, predictions)
            results[NO_KB] = (record, predictions)
        del loaded
        release_memory()  # the first model's memory goes back to the OS before the second one loads
    if rag is not None:
        rag.close()
    verdict = gate.check(results["base"][0], results["tuned"][0]) if gate and gate.active else None
    no_kb = results[NO_KB][0] if NO_KB in results else None
    paths = write_report(out, results["base"][0], results["tuned"][0], results["base"][1], results["tuned"][1],
                         run_dir, str(data), gate=verdict, tuned_no_kb=no_kb,
                         tool_rows=(tool_rows["base"], tool_rows["tuned"]) if tool_rows else None)
    if verdict is not None:
        write_verdict(run_dir, verdict, paths["html"])
    return {"out_dir": out, "report_md": paths["markdown"], "report_html": paths["html"],
            "base": results["base"][0], "tuned": results["tuned"][0], "tuned_no_kb": no_kb, "gate": verdict}


def table(result: dict[str, Any]) -> Any:
    """A rich table of base vs tuned for the terminal."""
    from rich.table import Table

    from lawtune.evaluation.report import metric_rows

    no_kb = result.get("tuned_no_kb")
    grid = Table(title="base (微调前) vs tuned (微调后)" + (", both with the KB's articles" if no_kb else ""))
    for column in ("metric", "base", *(["tuned, no KB"] if no_kb else []), "tuned", "Δ"):
        grid.add_column(column, justify="left" if column == "metric" else "right")
    for row in metric_rows(result["base"], result["tuned"], no_kb):
        style = "green" if row["better"] is True else "red" if row["better"] is False else ""
        middle = [] if not no_kb else ["" if row["no_kb"] is None else f"{row['no_kb']:.2f}"]
        grid.add_row(row["name"], f"{row['base']:.2f}", *middle, f"{row['tuned']:.2f}",
                     f"[{style}]{row['delta']:+.2f}[/]" if style else f"{row['delta']:+.2f}")
    return grid
