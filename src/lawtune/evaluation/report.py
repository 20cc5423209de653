"""The before/after report of `lawtune compare`: Markdown plus one self-contained HTML page.

    write_report(out_dir, base, tuned, base_predictions, tuned_predictions, run_dir)
    # → out_dir/report.md, out_dir/report.html (plots embedded as base64 PNG), out_dir/*.png

The HTML carries everything inline (CSS, images), so it can be mailed or attached to a ticket. Plot
labels are ASCII so they render without a CJK font in matplotlib; the Chinese text lives in the HTML,
where the browser picks the font.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from lawtune.fsutil import atomic_open, atomic_write_text
from lawtune.modeling.runs import LOSS_CURVE, loss_points
from lawtune.text import excerpt

HEADLINE = (("rouge-l", "ROUGE-L"), ("rouge-1", "ROUGE-1"), ("rouge-2", "ROUGE-2"), ("bleu-4", "BLEU-4"),
            ("ended_pct", "ended on its own %"), ("loops_pct", "looping answers %"))
# Per-answer quantities shown by their distribution (metrics[key] = {"mean", "p10", "p50", "p90"}).
DISTRIBUTIONS = (("stop_prob", "stop probability at the reference end"), ("length_ratio", "answer / reference length"))
# With --kb / --check-kb (lawtune.kb.rag.citation_metrics); shown only when both sides have them.
CITATIONS = (("citation_precision_pct", "citation precision %"), ("nonexistent_citation_pct", "nonexistent citations %"),
             ("cited_answers_pct", "answers citing a law %"),
             # lawtune.kb.grounding: (metric, label, the count it is a share of)
             ("retrieved_citation_pct", "cited articles among the retrieved %", "retrieved_citation_n"),
             ("reference_agreement_pct", "cites the reference's article %", "reference_questions"),
             ("reference_retrieved_pct", "reference's article retrieved %", "reference_questions"),
             ("retrieved_fit_pct", "cited retrieved articles the reference cites %", "retrieved_fit_n"),
             ("instruction_echo_pct", "answers echoing the RAG instruction %", None),
             ("no_fit_when_absent_pct", "says the material does not fit, reference's article not retrieved %", "no_fit_absent_n"),
             ("no_fit_when_present_pct", "says the material does not fit, reference's article retrieved %", "no_fit_present_n"),
             # lawtune.kb.attribution: answers that got a line naming a retrieved article they repeat
             ("attributed_pct", "answers given an attribution line %", None))
# With a tool set (lawtune.evaluation.tool_eval); shown only when both sides have them.
TOOL_ROWS = (("tool_choice_pct", "right tool chosen %"), ("tool_args_exact_pct", "right tool, exact arguments (same computation) %"),
             ("tool_args_same_keys_pct", "right tool, same argument keys and values %"),
             ("tool_figure_pct", "final answer holds the right figure %"), ("tool_call_parse_pct", "tool calls that parse %"),
             ("no_tool_pct", "no-tool questions answered without a call %"),
             ("ask_back_pct", "missing figure asked back %"))
NEUTRAL = {"attributed_pct"}  # neither more nor fewer is better in itself: no better/worse colour
LOWER_IS_BETTER = {"loops_pct", "eval_loss", "perplexity", "nonexistent_citation_pct", "instruction_echo_pct",
                   "no_fit_when_present_pct"}


# ---- the numbers --------------------------------------------------------------------------------------------
def metric_rows(base: dict[str, Any], tuned: dict[str, Any], no_kb: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per metric: name, base, tuned, delta, and whether the change is an improvement; with `no_kb`
    (compare --kb: the tuned model asked without the articles) also `no_kb`, its value or None."""
    rows = []
    # a tool set alone has no text metrics and no loss: only what both sides measured is shown
    pairs = [(label, base["metrics"][key], tuned["metrics"][key], key) for key, label in HEADLINE
             if key in base["metrics"] and key in tuned["metrics"]]
    if base.get("loss") and tuned.get("loss"):
        pairs += [("eval loss", base["loss"]["eval_loss"], tuned["loss"]["eval_loss"], "eval_loss"),
                  ("perplexity", base["loss"]["perplexity"], tuned["loss"]["perplexity"], "perplexity")]
    for key, label in DISTRIBUTIONS:
        b, t = base["metrics"].get(key) or {}, tuned["metrics"].get(key) or {}
        for stat in ("mean", "p50") if b and t else ():
            # a length ratio is best near 1, not high or low: no better/worse colour (key None)
            pairs.append((f"{label}, {stat}", b[stat], t[stat], key if key == "stop_prob" else None))
    for key, label, *count in CITATIONS:
        if key in base["metrics"] and key in tuned["metrics"]:
            n = tuned["metrics"].get(count[0]) if count and count[0] else None
            pairs.append((label if n is None else f"{label} (n={n})", base["metrics"][key], tuned["metrics"][key],
                          None if key in NEUTRAL else key))
    pairs += [(label, base["metrics"][key], tuned["metrics"][key], key) for key, label in TOOL_ROWS
              if key in base["metrics"] and key in tuned["metrics"]]
    for name in base.get("mcq", {}):
        if name in tuned.get("mcq", {}):
            pairs.append((f"MCQ {name} acc % (n={base['mcq'][name]['count']})", base["mcq"][name]["accuracy"],
                          tuned["mcq"][name]["accuracy"], "mcq"))
    for label, b, t, key in pairs:
        delta = t - b
        better = None if key is None else delta < 0 if key in LOWER_IS_BETTER else delta > 0
        rows.append({"name": label, "base": b, "tuned": t, "delta": delta, "better": better if delta else None})
    if no_kb is not None:  # the same rows computed against the no-KB record: its value sits where `base` was
        plain = {row["name"]: row["base"] for row in metric_rows(no_kb, tuned)}
        for row in rows:
            row["no_kb"] = plain.get(row["name"])
    return rows


# ---- plots ---------------------------------------------------------------------------------------------------
def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_metrics(rows: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["name"] in {label for _, label in HEADLINE} or r["name"].startswith("MCQ")]
    short = {"ended on its own %": "ended %", "looping answers %": "loops %"}
    names = [short.get(r["name"], r["name"].split(" acc %")[0].replace("MCQ ", "MCQ\n")) for r in shown]
    figure, axis = plt.subplots(figsize=(10, 3.6))
    x = range(len(shown))
    axis.bar([i - 0.2 for i in x], [r["base"] for r in shown], 0.4, label="base", color="#9aa5b1")
    axis.bar([i + 0.2 for i in x], [r["tuned"] for r in shown], 0.4, label="tuned", color="#2f6fdf")
    axis.set_xticks(list(x), names, fontsize=8)
    axis.set_ylabel("score (0-100)")
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axis.grid(axis="y", alpha=0.3)
    data = _png(figure)
    plt.close(figure)
    return data


def plot_distributions(base_predictions: list[dict[str, Any]], tuned_predictions: list[dict[str, Any]]) -> bytes:
    """Histograms, base vs tuned, of the per-answer stop probability and answer/reference length ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    panels = (("stop_prob", "p(end-of-turn) at the reference end", [i / 10 for i in range(11)]),
              ("length_ratio", "answer tokens / reference tokens", [i / 4 for i in range(17)]))
    for axis, (key, title, bins) in zip(axes, panels):
        for rows, label, color in ((base_predictions, "base", "#9aa5b1"), (tuned_predictions, "tuned", "#2f6fdf")):
            values = [min(r[key], bins[-1]) for r in rows if r.get(key) is not None]  # the last bin holds the rest
            axis.hist(values, bins=bins, alpha=0.6, label=label, color=color)
        axis.set_title(title, fontsize=9)
        axis.set_ylabel("answers")
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend()
    data = _png(figure)
    plt.close(figure)
    return data


def plot_loss(train: list[tuple[float, float]], dev: list[tuple[float, float]]) -> bytes | None:
    if not train and not dev:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.4))
    if train:
        axis.plot(*zip(*train), label="train loss", color="#9aa5b1")
    if dev:
        axis.plot(*zip(*dev), "o-", label="dev loss", color="#2f6fdf")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.legend()
    axis.grid(alpha=0.3)
    data = _png(figure)
    plt.close(figure)
    return data


# ---- rendering -----------------------------------------------------------------------------------------------
def _cell(text: str, limit: int = 400) -> str:
    """A Markdown table cell: one line, pipes escaped, long text shortened."""
    return excerpt(" ".join(str(text).split()), limit).replace("|", "\\|")


def render_markdown(context: dict[str, Any]) -> str:
    no_kb = context.get("no_kb_name") is not None
    if no_kb:  # compare --kb: base + KB | tuned alone | tuned + KB
        lines = [f"# {context['title']}", "", context["subtitle"], "",
                 "| metric | base + KB (微调前) | tuned, no KB | tuned + KB (微调后) | Δ |", "|---|---:|---:|---:|---:|"]
    else:
        lines = [f"# {context['title']}", "", context["subtitle"], "",
                 "| metric | base (微调前) | tuned (微调后) | Δ |", "|---|---:|---:|---:|"]
    for row in context["rows"]:
        middle = "" if not no_kb else " – |" if row["no_kb"] is None else f" {row['no_kb']:.2f} |"
        lines.append(f"| {row['name']} | {row['base']:.2f} |{middle} {row['tuned']:.2f} | {row['delta']:+.2f} |")
    lines += ["", f"Generation settings (identical for both): `{json.dumps(context['generation'])}`", ""]
    if context.get("gate"):
        gate = context["gate"]
        lines += [f"## Quality gate: {'PASSED 通过' if gate['passed'] else 'FAILED 未通过'}", ""]
        lines += [f"- {'✓' if c['passed'] else '✗'} {c['check']} {c['limit']}: measured {c['value']}" for c in gate["checks"]]
        lines.append("")
    if context["loss_png"]:
        lines += ["![train/dev loss](loss_curve.png)", ""]
    lines += ["![metrics](metrics.png)", "", "![stop probability and length distributions](distributions.png)", "",
              "## Per question / 逐题对比", "",
              "| # | question 问题 | reference 参考答案 | base 微调前 | tuned 微调后 | ROUGE-L base → tuned |",
              "|---:|---|---|---|---|---|"]
    for i, q in enumerate(context["questions"], start=1):
        lines.append(f"| {i} | {_cell(q['prompt'])} | {_cell(q['reference'])} | {_cell(q['base'])} | "
                     f"{_cell(q['tuned'])} | {q['base_rouge_l']:.1f} → {q['tuned_rouge_l']:.1f} |")
    if context.get("tool_questions"):
        lines += ["", "## Tool questions / 工具题", "",
                  "| # | question 问题 | expected call 应调用 | base 微调前 | tuned 微调后 |", "|---:|---|---|---|---|"]
        for i, q in enumerate(context["tool_questions"], start=1):
            lines.append(f"| {i} | {_cell(q['prompt'])} | {_cell(q['expected'])} | {q['base_verdict']} "
                         f"{_cell(q['base_call'])} {_cell(q['base'], 160)} | {q['tuned_verdict']} {_cell(q['tuned_call'])} "
                         f"{_cell(q['tuned'], 160)} |")
    return "\n".join(lines) + "\n"


def render_html(context: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader

    # select_autoescape() only knows .html/.xml names, not .html.jinja: every template here is escaped, so a
    # prediction holding <script> is shown as text in the report people mail around
    env = Environment(loader=PackageLoader("lawtune.evaluation", "templates"), autoescape=True)
    return env.get_template("report.html.jinja").render(**context)


def write_report(out_dir: Path, base: dict[str, Any], tuned: dict[str, Any], base_predictions: list[dict[str, Any]],
                 tuned_predictions: list[dict[str, Any]], run_dir: Path | None, data_path: str,
                 gate: dict[str, Any] | None = None, tuned_no_kb: dict[str, Any] | None = None,
                 tool_rows: tuple[list, list] | None = None) -> dict[str, Path]:
    """Write report.md, report.html, metrics.png and (when the run logged losses) loss_curve.png.

    `tuned_no_kb` (compare --kb): the tuned model's record without the articles, shown as a third column.
    `tool_rows`: (base, tuned) rows of a tool set (lawtune.evaluation.tool_eval), shown per question."""
    from lawtune.evaluation.tool_eval import report_rows

    rows = metric_rows(base, tuned, tuned_no_kb)
    metrics_png = plot_metrics(rows)
    distributions_png = plot_distributions(base_predictions, tuned_predictions)
    loss_png = plot_loss(*loss_points(run_dir))
    questions = [{"prompt": b["prompt"], "reference": b["reference"], "base": b["prediction"], "tuned": t["prediction"],
                  "base_rouge_l": b["scores"]["rouge-l"], "tuned_rouge_l": t["scores"]["rouge-l"],
                  "base_flags": _flags(b), "tuned_flags": _flags(t)}
                 for b, t in zip(base_predictions, tuned_predictions)]
    context = {
        "title": "lawtune compare: base vs tuned / 微调前 vs 微调后",
        "subtitle": f"{base['model']['name']} → {tuned['model']['name']} on {data_path} "
                    f"({len(questions)} held-out questions, greedy decoding)",
        "rows": rows, "generation": tuned["generation"], "questions": questions, "gate": gate,
        "tool_questions": report_rows(*tool_rows) if tool_rows else [],
        "base_name": base["model"]["name"], "tuned_name": tuned["model"]["name"],
        "no_kb_name": tuned_no_kb["model"]["name"] if tuned_no_kb else None,
        "metrics_png": base64.b64encode(metrics_png).decode(),
        "distributions_png": base64.b64encode(distributions_png).decode(),
        "loss_png": base64.b64encode(loss_png).decode() if loss_png else None,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, png in (("metrics.png", metrics_png), ("distributions.png", distributions_png)):
        with atomic_open(out_dir / name, "wb") as handle:
            handle.write(png)
    if loss_png:
        with atomic_open(out_dir / LOSS_CURVE, "wb") as handle:
            handle.write(loss_png)
    atomic_write_text(out_dir / "report.md", render_markdown(context))
    atomic_write_text(out_dir / "report.html", render_html(context))
    return {"markdown": out_dir / "report.md", "html": out_dir / "report.html"}


def _flags(prediction: dict[str, Any]) -> list[str]:
    flags = []
    if prediction.get("finish_reason") == "repetition":
        flags.append("重复截断 cut at a repetition")
    elif not prediction["ended"]:
        flags.append("未结束 cut off")
    if prediction["loops"]:
        flags.append("循环 loops")
    return flags
