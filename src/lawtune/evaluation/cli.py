"""Commands of the evaluation area: `eval`, `compare`, `infer`, `chat` (registered by `lawtune.cli`).

Only typer and the light settings classes are imported here; torch and transformers load inside the commands
so `lawtune --help` stays fast. The flags are made from the settings classes (`lawtune.settings.option`):
`EvalOptions` (what eval / compare measure), `GenerationSettings` (budget, batching, sampling) and
`DecodingPolicy` (repetition control: `lawtune.modeling.decoding_options`, shared with `serve`), so defaults and
help live there; tests/test_cli_settings.py fails when a flag and a field drift apart. Each command hands the
library one `EvalOptions`, one `GenerationSettings` (with its `DecodingPolicy`), not their fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from lawtune.evaluation.generation import GenerationSettings  # light: no torch
from lawtune.evaluation.settings import EvalOptions
from lawtune.modeling.decoding import DecodingPolicy
from lawtune.modeling.decoding_options import decoding_options
from lawtune.settings import option, options_of, validate

MAX_NEW = option(GenerationSettings, "max_new_tokens", help="Answer budget in tokens, the same for every model compared. Default: fits the references (their 95th-percentile length, at least 384).")
BATCH = option(GenerationSettings, "batch_size")
MAX_IN = option(GenerationSettings, "max_input_length", default=None, help="Prompt tokens kept (cut from the left). Default 512, 1536 with --kb (room for the articles).")
# infer / chat: one answer at a time, greedy unless --sample
ANSWER_TOKENS = option(GenerationSettings, "max_new_tokens", default=256, help="Answer budget in tokens.")
SAMPLE = option(GenerationSettings, "do_sample", "--sample", help="Sample instead of greedy decoding (opt-in).")
TEMPERATURE = option(GenerationSettings, "temperature")
TOP_P = option(GenerationSettings, "top_p")
SEED = option(GenerationSettings, "seed")
# what eval / compare measure besides the text, and the knowledge base
BASE_ONLY = option(EvalOptions, "base_only")
MAX_OUT = option(EvalOptions, "max_output_length")
KB = option(EvalOptions, "kb")
CHECK_KB = option(EvalOptions, "check_kb")
KB_K = option(EvalOptions, "kb_k")
KB_CHARS = option(EvalOptions, "kb_chars")
CITE = option(EvalOptions, "cite_constraint", "--cite-constraint/--no-cite-constraint")
ATTRIBUTE = option(EvalOptions, "attribute", "--attribute/--no-attribute")
DTYPE = option(EvalOptions, "dtype")
MCQ = option(EvalOptions, "mcq")
NO_MCQ = typer.Option(False, "--no-mcq", help="Skip the multiple-choice knowledge check.")
MCQ_LIMIT = option(EvalOptions, "mcq_limit")
LIMIT = option(EvalOptions, "limit")
# tool use (lawtune.evaluation.tool_eval)
TOOL_DATA = option(EvalOptions, "tool_data")
TOOLS = option(EvalOptions, "tools")
TOOL_LIMIT = option(EvalOptions, "tool_limit")
# infer / chat: the agent loop (lawtune.tools.agent)
AGENT_TOOLS = typer.Option(None, "--tools", help="builtin: answer through the built-in legal tools (the agent loop: "
                           "severance, overtime, deadlines, ...; with --kb also article lookup and law search).")
AGENT_ROUNDS = typer.Option(4, "--tool-rounds", min=1, max=16, help="Tool rounds at most (with --tools).")


def _settings(max_new_tokens: Optional[int], batch_size: int, max_input_length: Optional[int], decoding: DecodingPolicy,
              kb: Optional[Path] = None, **sampling):
    from lawtune.evaluation.generation import GenerationSettings
    from lawtune.kb.rag import RAG_INPUT_LENGTH

    if max_input_length is None:  # the articles must not be cut away from the front of a RAG prompt
        max_input_length = RAG_INPUT_LENGTH if kb is not None else 512

    return validate(GenerationSettings, dict(max_new_tokens=max_new_tokens, decoding=decoding, batch_size=batch_size,
                                             max_input_length=max_input_length, **sampling),
                    "generation", as_flags=True, flags={"do_sample": "--sample"})


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
    if record["loss"]:  # none for a tool set alone
        grid.add_row("eval loss", f"{record['loss']['eval_loss']:.4f}")
        grid.add_row("perplexity", f"{record['loss']['perplexity']:.2f}")
    for name, result in record["mcq"].items():
        grid.add_row(f"MCQ {name} acc % (n={result['count']})", f"{result['accuracy']:.2f}")
    Console().print(grid)
    Console().print(f"wrote {record['out_dir']}/metrics.json and predictions.jsonl ({_peak()})")


def _peak() -> str:
    from lawtune.memory import peak_rss_mib

    return f"peak resident memory {peak_rss_mib():,.0f} MiB"


@options_of("decoding", decoding_options)
def eval_command(
    model: str = typer.Argument(..., help="Run folder, model folder, or imported model name."),
    data: Path = typer.Option(..., "--data", "-d", help="conversations JSONL (e.g. the test.jsonl of `lawtune prepare`), or `lawbench_3-8` for the bundled LawBench sample."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default RUN/eval/<data> or out/eval/...)."),
    base_only: bool = BASE_ONLY, max_new_tokens: Optional[int] = MAX_NEW, batch_size: int = BATCH, max_input_length: Optional[int] = MAX_IN,
    decoding: DecodingPolicy = None,  # the decoding flags (options_of)
    max_output_length: int = MAX_OUT,
    mcq: Optional[list[str]] = MCQ, no_mcq: bool = NO_MCQ, mcq_limit: int = MCQ_LIMIT,
    limit: Optional[int] = LIMIT, dtype: str = DTYPE,
    kb: Optional[Path] = KB, check_kb: Optional[Path] = CHECK_KB, kb_k: int = KB_K, kb_chars: int = KB_CHARS,
    cite_constraint: bool = CITE, attribute: bool = ATTRIBUTE,
    tool_data: Optional[Path] = TOOL_DATA, tools: Optional[str] = TOOLS, tool_limit: Optional[int] = TOOL_LIMIT,
) -> None:
    """Generation metrics (BLEU-4, ROUGE-1/2/L), eval loss and MCQ accuracy of one model.

    With --kb: questions asked with retrieved articles, citation precision and nonexistent-citation rate.
    With --tool-data (or a --data whose records carry tools): right tool, exact arguments, calls that parse,
    the figure in the final answer, no call where none is needed (the agent loop runs the tools).

    Example: lawtune eval runs/demo --data out/demo/data/test.jsonl --limit 30 --tool-data out/demo/tools/test.jsonl
    """
    from lawtune.evaluation.evaluate import run

    options = validate(EvalOptions, dict(
        base_only=base_only, max_output_length=max_output_length, mcq=[] if no_mcq else mcq, mcq_limit=mcq_limit,
        limit=limit, dtype=dtype, kb=kb, check_kb=check_kb, kb_k=kb_k, kb_chars=kb_chars,
        cite_constraint=cite_constraint, attribute=attribute, tool_data=tool_data, tools=tools, tool_limit=tool_limit),
        "eval", as_flags=True)
    settings = _settings(max_new_tokens, batch_size, max_input_length, decoding, kb=kb)
    record = run(model, data, out, options=options, settings=settings)
    _print_record(record)


@options_of("decoding", decoding_options)
def compare_command(
    base: str = typer.Argument(..., help="`base` (the run's own base model), a model folder, an imported name, or another run."),
    run: Path = typer.Argument(..., help="The tuned run folder."),
    data: Path = typer.Option(..., "--data", "-d", help="conversations JSONL with held-out questions."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default RUN/compare)."),
    max_new_tokens: Optional[int] = MAX_NEW, batch_size: int = BATCH, max_input_length: Optional[int] = MAX_IN,
    decoding: DecodingPolicy = None,  # the decoding flags (options_of)
    max_output_length: int = MAX_OUT,
    mcq: Optional[list[str]] = MCQ, no_mcq: bool = NO_MCQ, mcq_limit: int = MCQ_LIMIT,
    limit: Optional[int] = LIMIT, dtype: str = DTYPE,
    min_rouge_gain: Optional[float] = typer.Option(None, "--min-rouge-gain", help="Quality gate: tuned ROUGE-L must beat the base by this many points."),
    min_ended: Optional[float] = typer.Option(None, "--min-ended", help="Quality gate: at least this % of tuned answers end on their own."),
    max_looping: Optional[float] = typer.Option(None, "--max-looping", help="Quality gate: at most this % of tuned answers loop."),
    max_mcq_drop: Optional[float] = typer.Option(None, "--max-mcq-drop", help="Quality gate: no MCQ set's accuracy falls more than this many points below the base."),
    kb: Optional[Path] = KB, check_kb: Optional[Path] = CHECK_KB, kb_k: int = KB_K, kb_chars: int = KB_CHARS,
    cite_constraint: bool = CITE, attribute: bool = ATTRIBUTE,
    tool_data: Optional[Path] = TOOL_DATA, tools: Optional[str] = TOOLS, tool_limit: Optional[int] = TOOL_LIMIT,
    min_tool_choice: Optional[float] = typer.Option(None, "--min-tool-choice", help="Quality gate: % of tool questions whose first call names the right tool."),
    min_tool_args_exact: Optional[float] = typer.Option(None, "--min-tool-args-exact", help="Quality gate: % of tool questions called with the right tool and exactly the right arguments."),
    min_tool_figure: Optional[float] = typer.Option(None, "--min-tool-figure", help="Quality gate: % of tool questions whose final answer holds the right figure."),
    min_no_tool: Optional[float] = typer.Option(None, "--min-no-tool", help="Quality gate: % of questions needing no tool answered without a call."),
) -> None:
    """Base vs tuned on the same questions: metrics, deltas, loss curves, MCQ, per-question answers.

    With any --min-*/--max-* threshold the verdict is written to the report and RUN/quality_gate.json
    (which `lawtune serve` checks), and a failed gate exits with status 1.

    Example: lawtune compare base runs/demo --data out/demo/data/test.jsonl --limit 30 --min-rouge-gain 6 --max-looping 20
    """
    from rich.console import Console

    from lawtune.evaluation.compare import run as compare_run, table
    from lawtune.evaluation.gate import Gate, describe

    gate = Gate(min_rouge_gain, min_ended, max_looping, max_mcq_drop, min_tool_choice, min_tool_args_exact,
                min_tool_figure, min_no_tool)

    options = validate(EvalOptions, dict(
        max_output_length=max_output_length, mcq=[] if no_mcq else mcq, mcq_limit=mcq_limit, limit=limit,
        dtype=dtype, kb=kb, check_kb=check_kb, kb_k=kb_k, kb_chars=kb_chars, cite_constraint=cite_constraint,
        attribute=attribute, tool_data=tool_data, tools=tools, tool_limit=tool_limit), "compare", as_flags=True)
    settings = _settings(max_new_tokens, batch_size, max_input_length, decoding, kb=kb)
    result = compare_run(base, run, data, out, options=options, settings=settings, gate=gate)
    Console().print(table(result))
    Console().print(f"report: {result['report_html']} (and {result['report_md'].name}; {_peak()})")
    verdict = result["gate"]
    if verdict is not None:
        Console().print(("[green]quality gate passed[/]\n" if verdict["passed"] else "[red]quality gate FAILED[/]\n") + describe(verdict))
        if not verdict["passed"]:
            raise typer.Exit(1)


@options_of("decoding", decoding_options)
def infer_command(
    model: str = typer.Argument(..., help="Run folder, model folder, or imported model name."),
    prompt: str = typer.Option(..., "--prompt", "-p", help="The question."),
    system: Optional[str] = typer.Option(None, "--system", help="Optional system prompt."),
    base_only: bool = option(EvalOptions, "base_only", help="Ask the run's base model (no adapter)."),
    max_new_tokens: int = ANSWER_TOKENS,
    decoding: DecodingPolicy = None,  # the decoding flags (options_of)
    sample: bool = SAMPLE, temperature: float = TEMPERATURE, top_p: float = TOP_P,
    seed: int = SEED,
    dtype: str = DTYPE, kb: Optional[Path] = KB, kb_k: int = KB_K, kb_chars: int = KB_CHARS,
    cite_constraint: bool = CITE, attribute: bool = ATTRIBUTE, tools: Optional[str] = AGENT_TOOLS,
    tool_rounds: int = AGENT_ROUNDS,
) -> None:
    """One question, one answer; greedy (deterministic) unless --sample.

    Example: lawtune infer runs/demo --prompt "劳动合同到期不续签有补偿吗？" --kb kb.sqlite
    Example: lawtune infer runs/demo --tools builtin --prompt "工作3年5个月，月薪8000，协商解除，补偿多少"
    """
    from lawtune.evaluation.infer import infer
    from lawtune.kb.rag import Rag

    # with --tools the definitions alone are ~2,000 tokens of the Gemma tokenizer (docs/tools.md): room for them
    settings = _settings(max_new_tokens, 1, 2048 if tools is None else 8192, decoding, do_sample=sample,
                         temperature=temperature, top_p=top_p, seed=seed)
    # a bad KB fails before loading
    rag = (Rag.open(kb, k=kb_k, max_chars=kb_chars, cite_constraint=cite_constraint, attribute=attribute)
           if kb is not None else None)
    agent = _agent(tools, tool_rounds, rag)
    infer(model, prompt, settings, base_only=base_only, system=system, dtype=dtype, stream=True, rag=rag, agent=agent)


@options_of("decoding", decoding_options)
def chat_command(
    model: str = typer.Argument(..., help="Run folder, model folder, or imported model name."),
    system: Optional[str] = typer.Option(None, "--system", help="Optional system prompt."),
    base_only: bool = option(EvalOptions, "base_only", help="Chat with the run's base model (no adapter)."),
    max_new_tokens: int = ANSWER_TOKENS,
    decoding: DecodingPolicy = None,  # the decoding flags (options_of)
    sample: bool = SAMPLE, temperature: float = TEMPERATURE, top_p: float = TOP_P,
    seed: int = SEED, dtype: str = DTYPE,
    kb: Optional[Path] = KB, kb_k: int = KB_K, kb_chars: int = KB_CHARS, cite_constraint: bool = CITE,
    attribute: bool = ATTRIBUTE, tools: Optional[str] = AGENT_TOOLS, tool_rounds: int = AGENT_ROUNDS,
) -> None:
    """Multi-turn chat in the terminal, with history (/reset, /exit).

    Example: lawtune chat runs/demo --kb kb.sqlite
    """
    from lawtune.evaluation.infer import chat_loop
    from lawtune.kb.rag import Rag

    settings = _settings(max_new_tokens, 1, 2048 if tools is None else 8192, decoding, do_sample=sample,
                         temperature=temperature, top_p=top_p, seed=seed)
    rag = (Rag.open(kb, k=kb_k, max_chars=kb_chars, cite_constraint=cite_constraint, attribute=attribute)
           if kb is not None else None)
    chat_loop(model, settings, base_only=base_only, system=system, dtype=dtype, rag=rag,
              agent=_agent(tools, tool_rounds, rag))


def _agent(tools: str | None, rounds: int, rag: Any) -> Any:
    """`--tools builtin` → the agent over the built-in tools (+ the KB's lookup tools); no --tools → None."""
    from lawtune.errors import LawtuneError

    if tools is None:
        return None
    if tools != "builtin":
        raise LawtuneError(f"--tools {tools!r}: the one tool set is builtin (the built-in legal tools)")
    from lawtune.tools import builtin_tools
    from lawtune.tools.agent import Agent

    return Agent(builtin_tools(kb=rag.retriever if rag is not None else None), max_rounds=rounds)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)
    app.command("infer")(infer_command)
    app.command("chat")(chat_command)
