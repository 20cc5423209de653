"""Commands of the evaluation area: `eval`, `compare`, `infer`, `chat` (registered by `lawtune.cli`).

Only typer is imported here; torch and transformers load inside the commands so `lawtune --help` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

MAX_NEW = typer.Option(None, "--max-new-tokens", help="Answer budget in tokens, the same for every model compared. Default: fits the references (their 95th-percentile length, at least 384).")
REP = typer.Option(1.0, "--repetition-penalty", help="Deterministic repetition control; 1.0 = off.")
NO_REPEAT = typer.Option(0, "--no-repeat-ngram-size", help="Forbid repeating any n-gram of this size; 0 = off.")
BATCH = typer.Option(8, "--batch-size", help="Prompts generated together (left padding).")
MAX_IN = typer.Option(512, "--max-input-length", help="Prompt tokens kept (cut from the left).")
DTYPE = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16.")
MCQ = typer.Option(None, "--mcq", help="MCQ set: a bundled name (jecqa_single, lawbench_1-2) or a JSONL path; repeat it. Default: both bundled sets.")
NO_MCQ = typer.Option(False, "--no-mcq", help="Skip the multiple-choice knowledge check.")
MCQ_LIMIT = typer.Option(50, "--mcq-limit", help="Questions used from each MCQ set (the bundled ones hold 200; ~1 s each on 2 CPU cores).")
LIMIT = typer.Option(None, "--limit", help="Use only the first N examples of --data.")


def _settings(max_new_tokens: Optional[int], repetition_penalty: float, no_repeat_ngram_size: int, batch_size: int,
              max_input_length: int, **sampling):
    from lawtune.evaluation.generation import GenerationSettings

    return GenerationSettings(max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
                              no_repeat_ngram_size=no_repeat_ngram_size, batch_size=batch_size,
                              max_input_length=max_input_length, **sampling)


def _print_record(record: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    grid = Table(title=f"{record['model']['name']} on {record['data']['path']} (n={record['data']['count']})")
    grid.add_column("metric")
    grid.add_column("value", justify="right")
    for key, value in record["metrics"].items():
        if isinstance(value, dict):  # a distribution (mean, p10, p50, p90) or the finish-reason shares
            value = ", ".join(f"{k} {v:.2f}" for k, v in value.items())
        grid.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    grid.add_row("eval loss", f"{record['loss']['eval_loss']:.4f}")
    grid.add_row("perplexity", f"{record['loss']['perplexity']:.2f}")
    for name, result in record["mcq"].items():
        grid.add_row(f"MCQ {name} acc % (n={result['count']})", f"{result['accuracy']:.2f}")
    Console().print(grid)
    Console().print(f"wrote {record['out_dir']}/metrics.json and predictions.jsonl")


def eval_command(
    model: str = typer.Argument(..., help="Run folder, model folder, or imported model name."),
    data: Path = typer.Option(..., "--data", "-d", help="conversations JSONL (e.g. the test.jsonl of `lawtune prepare`), or `lawbench_3-8` for the bundled LawBench sample."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default RUN/eval/<data> or out/eval/...)."),
    base_only: bool = typer.Option(False, "--base-only", help="For a run folder: evaluate its base model, no adapter."),
    max_new_tokens: Optional[int] = MAX_NEW, repetition_penalty: float = REP, no_repeat_ngram_size: int = NO_REPEAT,
    batch_size: int = BATCH, max_input_length: int = MAX_IN,
    max_output_length: int = typer.Option(512, "--max-output-length", help="Reference tokens scored for eval loss."),
    mcq: Optional[list[str]] = MCQ, no_mcq: bool = NO_MCQ, mcq_limit: int = MCQ_LIMIT,
    limit: Optional[int] = LIMIT, dtype: str = DTYPE,
) -> None:
    """Generation metrics (BLEU-4, ROUGE-1/2/L), eval loss and MCQ accuracy of one model.

    Example: lawtune eval runs/demo --data out/demo/data/test.jsonl --limit 30
    """
    from lawtune.evaluation.evaluate import run

    settings = _settings(max_new_tokens, repetition_penalty, no_repeat_ngram_size, batch_size, max_input_length)
    record = run(model, data, out, base_only=base_only, settings=settings, mcq=[] if no_mcq else mcq,
                 mcq_limit=mcq_limit, limit=limit, max_output_length=max_output_length, dtype=dtype)
    _print_record(record)


def compare_command(
    base: str = typer.Argument(..., help="`base` (the run's own base model), a model folder, an imported name, or another run."),
    run: Path = typer.Argument(..., help="The tuned run folder."),
    data: Path = typer.Option(..., "--data", "-d", help="conversations JSONL with held-out questions."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default RUN/compare)."),
    max_new_tokens: Optional[int] = MAX_NEW, repetition_penalty: float = REP, no_repeat_ngram_size: int = NO_REPEAT,
    batch_size: int = BATCH, max_input_length: int = MAX_IN,
    max_output_length: int = typer.Option(512, "--max-output-length", help="Reference tokens scored for eval loss."),
    mcq: Optional[list[str]] = MCQ, no_mcq: bool = NO_MCQ, mcq_limit: int = MCQ_LIMIT,
    limit: Optional[int] = LIMIT, dtype: str = DTYPE,
) -> None:
    """Base vs tuned on the same questions: metrics, deltas, loss curves, MCQ, per-question answers.

    Example: lawtune compare base runs/demo --data out/demo/data/test.jsonl --limit 30
    """
    from rich.console import Console

    from lawtune.evaluation.compare import run as compare_run, table

    settings = _settings(max_new_tokens, repetition_penalty, no_repeat_ngram_size, batch_size, max_input_length)
    result = compare_run(base, run, data, out, settings=settings, mcq=[] if no_mcq else mcq, mcq_limit=mcq_limit,
                         limit=limit, max_output_length=max_output_length, dtype=dtype)
    Console().print(table(result))
    Console().print(f"report: {result['report_html']} (and {result['report_md'].name})")


def infer_command(
    model: str = typer.Argument(..., help="Run folder, model folder, or imported model name."),
    prompt: str = typer.Option(..., "--prompt", "-p", help="The question."),
    system: Optional[str] = typer.Option(None, "--system", help="Optional system prompt."),
    base_only: bool = typer.Option(False, "--base-only", help="Ask the run's base model (no adapter)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens"), repetition_penalty: float = REP,
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding (opt-in)."),
    temperature: float = typer.Option(0.8, "--temperature"), top_p: float = typer.Option(0.8, "--top-p"),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (the same seed gives the same answer)."),
    dtype: str = DTYPE,
) -> None:
    """One question, one answer; greedy (deterministic) unless --sample.

    Example: lawtune infer runs/demo --prompt "劳动合同到期不续签有补偿吗？"
    """
    from lawtune.evaluation.infer import infer

    settings = _settings(max_new_tokens, repetition_penalty, 0, 1, 2048, do_sample=sample, temperature=temperature,
                         top_p=top_p, seed=seed)
    infer(model, prompt, settings, base_only=base_only, system=system, dtype=dtype, stream=True)


def chat_command(
    model: str = typer.Argument(..., help="Run folder, model folder, or imported model name."),
    system: Optional[str] = typer.Option(None, "--system", help="Optional system prompt."),
    base_only: bool = typer.Option(False, "--base-only", help="Chat with the run's base model (no adapter)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens"), repetition_penalty: float = REP,
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding (opt-in)."),
    temperature: float = typer.Option(0.8, "--temperature"), top_p: float = typer.Option(0.8, "--top-p"),
    seed: int = typer.Option(0, "--seed"), dtype: str = DTYPE,
) -> None:
    """Multi-turn chat in the terminal, with history (/reset, /exit).

    Example: lawtune chat runs/demo
    """
    from lawtune.evaluation.infer import chat_loop

    settings = _settings(max_new_tokens, repetition_penalty, 0, 1, 2048, do_sample=sample, temperature=temperature,
                         top_p=top_p, seed=seed)
    chat_loop(model, settings, base_only=base_only, system=system, dtype=dtype)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)
    app.command("infer")(infer_command)
    app.command("chat")(chat_command)
