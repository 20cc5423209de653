"""`lawtune demo`: the whole pipeline on the bundled sample, end to end, on a laptop CPU.

    lawtune demo                 # prepare → import the default model → train configs/demo.yaml → compare
    lawtune demo --quick         # smoke run of a few minutes: a few steps, a few questions
    lawtune demo --model DIR --quick --max-steps 2 --out /tmp/demo   # any local model folder (tests use a tiny one)
    lawtune demo --tools         # also trains on tool-use conversations (configs/demo-tools.yaml) and measures them

Steps, each reusing what an earlier demo left behind (prepare is cheap and redone; the imported model is
cached; training resumes or is already finished in OUT/run):
1. `lawtune prepare data/legal_qa_sample.csv -o OUT/data`; RAG examples: `lawtune kb build -o OUT/kb.sqlite` (the
   bundled laws), `lawtune prepare data/article_cited/legal_counsel_with_article_v2.json -o OUT/cited --kb
   OUT/kb.sqlite --rag-share 1`, and OUT/data/train-rag.jsonl = the sample's train split + RAG_SHARE of RAG-format
   rows (docs/knowledge-base.md "Training on RAG examples"); with --tools also `lawtune tools generate -o OUT/tools
   --qa OUT/data --n TOOL_N --tools-per-record 2`, and OUT/data/train-tools.jsonl, the tool stage's file
   (`tool_stage_file`: generated tool-use rows, half of the tool conversations cut after the call, and a replay of
   train-rag.jsonl; docs/tools.md "Recipes with tools")
2. `lawtune model import` (the Gemma 3 270M GGUF, dequantized once)
3. `lawtune train configs/demo.yaml` on OUT/data/train-rag.jsonl into OUT/run; with --tools then the tool stage,
   `lawtune train configs/demo-tools.yaml model.init_adapter=OUT/run` on OUT/data/train-tools.jsonl into
   OUT/run-tools (it starts from the Q&A adapter: the same first stage as `lawtune demo`, reused when done)
4. `lawtune compare base OUT/run --data OUT/data/test.jsonl` → OUT/report/report.{md,html} (--tools: OUT/run-tools,
   plus `--tool-data OUT/tools/test.jsonl --tool-limit TOOL_QUESTIONS`, the held-out tool questions beside the Q&A)
The answers with the KB are measured apart (not in the 20 minutes): `lawtune compare base OUT/run --data
OUT/cited/test.jsonl --kb OUT/kb.sqlite --no-mcq --limit 24`.

Each step runs in a fresh Python process of its own (`lawtune.phase_process`), so none inherits the memory an earlier
one left; at the end it prints each step's peak resident memory: its process's plus this one's (the orchestrating
process, which holds no model), and the largest of those sums, the demo's peak.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from lawtune import bundled

SAMPLE = bundled.sample_csv()
ARTICLE_CITED = bundled.article_cited()
DEMO_CONFIG = bundled.config("demo")
# `lawtune demo --tools`: the same Q&A stage, then a tool stage from its adapter (docs/tools.md "Recipes with tools").
# Opt-in: the stage and the 40 tool questions asked of both models take longer than the Q&A demo (docs/tools.md)
DEMO_TOOLS_CONFIG = bundled.config("demo-tools")
# share of the training file in the RAG format (article-cited consultations with retrieved articles): enough
# for the model to see a few dozen in 56 steps, little enough that the sample's own figures hold (docs/evaluation.md)
RAG_SHARE = 0.2
# tool-use conversations (lawtune tools generate): how many to generate, how many definitions each row offers
# (docs/tools.md "Recipes with tools")
TOOL_N = 3600
TOOLS_PER_RECORD = 2
TOOL_TRAIN = "train-tools.jsonl"
TOOL_RUN = "run-tools"
# The tool stage (configs/demo-tools.yaml, started from the Q&A stage's adapter): the shares of its training file.
# Tool conversations dominate: the measured one-stage recipe (45 % tool rows, 120 steps, ~160 calls seen) failed 24
# of its 25 failed tool questions at the call turn (no call 10, wrong tool 6, wrong arguments 8) and 1 at the answer;
# the replay of the first stage's rows keeps its answers and, shown tools, teaches "tools offered, none needed".
# Choices, not tuned on the test questions.
TOOL_STAGE_SHARES = {"tool": 0.6, "no_tool": 0.1, "ask_back": 0.05, "replay": 0.25}
# of the tool conversations, the share cut after the assistant's call (no result, no final answer): a call row costs
# ~2/3 of a whole conversation's tokens, so the stage sees more call decisions per minute, where the failures were;
# the other half keep the result and the answer that copies its figure. A choice, not tuned
CALL_ONLY_SHARE = 0.5
# rows in the stage's file (the stage sees max_steps × batch of them: a random subset in the file's proportions)
TOOL_STAGE_ROWS = 1600
# share of the replayed plain Q&A rows (not RAG rows, not questions that want a tool) shown TOOLS_PER_RECORD random
# tool definitions and answered as before, without a call: without them every prompt offering tools was a tool row
# to the model, and it learned "tools offered ⇒ call" (no-tool questions answered without a call 12.5 %, 2026-12-07);
# a choice, not tuned
QA_WITH_TOOLS_SHARE = 0.5


@dataclass(frozen=True)
class DemoSize:
    """How much of each step the demo does; sized so the full demo fits 20 minutes on 2 CPU cores."""

    questions: int  # held-out test questions generated by both models
    tool_questions: int  # held-out tool-use questions (OUT/tools/test.jsonl) asked through the agent loop
    max_new_tokens: Optional[int]  # None: a budget that fits the references (≥ 384, see evaluate.answer_budget)
    mcq_limit: int  # questions per bundled MCQ set
    max_steps: Optional[int]  # None: what configs/demo.yaml says


FULL = DemoSize(questions=30, tool_questions=40, max_new_tokens=None, mcq_limit=50, max_steps=None)
QUICK = DemoSize(questions=6, tool_questions=4, max_new_tokens=24, mcq_limit=8, max_steps=3)
# The demo's quality gate (docs/evaluation.md): what 56 CPU steps must reach before `lawtune serve` takes the
# run without --force. The quick smoke run is not gated.
DEMO_GATE = {"min_rouge_gain": 6.0, "min_ended_pct": 40.0, "max_loops_pct": 47.0, "max_mcq_drop": 2.0}


def _resolve_model(spec: Optional[str]) -> Path:
    from lawtune.modeling.importer import import_model
    from lawtune.modeling.runs import resolve_model_path

    if spec is None or spec == "default":
        return import_model()
    if Path(spec).is_file():  # a .gguf: import it once, like `lawtune model import FILE`
        return import_model(spec)
    return resolve_model_path(spec)


RAG_TRAIN = "train-rag.jsonl"


def rag_training_mix(out: Path, report: dict, share: float = RAG_SHARE, seed: int = 0) -> dict:
    """OUT/data/train-rag.jsonl: OUT/data/train.jsonl plus RAG-format rows making up `share` of it, from the train
    split of the article-cited consultations (OUT/cited) asked with the bundled laws (OUT/kb.sqlite)."""
    import json
    import random

    from lawtune.data.prepare import run as prepare
    from lawtune.fsutil import atomic_open
    from lawtune.kb.build import build
    from lawtune.kb.rag import Rag
    from lawtune.kb.rag_examples import rag_training_file

    kb = out / "kb.sqlite"
    build([], kb)  # the bundled laws, ~2 s: rebuilt each time, so a KB of an older lawtune's format is never reused
    prepare([ARTICLE_CITED], out / "cited")
    with Rag.open(kb) as rag:
        stats = rag_training_file(out / "cited" / "train.jsonl", rag, share=1.0, seed=seed)
    plain = (out / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [line for line in (out / "cited" / "train.jsonl").read_text(encoding="utf-8").splitlines()
            if "rag" in json.loads(line)["meta"]]  # those with a gold article (the others stay out)
    wanted = min(len(rows), round(share / (1 - share) * len(plain)))
    mixed = plain + random.Random(seed).sample(rows, wanted)
    with atomic_open(out / "data" / RAG_TRAIN) as handle:
        handle.write("".join(line + "\n" for line in mixed))
    return {**stats, "added": wanted, "share": wanted / max(len(mixed), 1)}


def tool_stage_file(out: Path, seed: int = 0, rows: int = TOOL_STAGE_ROWS) -> dict:
    """OUT/tools: the generated tool-use set (its test split held out); OUT/data/train-tools.jsonl: the tool stage's
    training file, `rows` lines in TOOL_STAGE_SHARES — tool conversations of OUT/tools/train.jsonl (CALL_ONLY_SHARE of
    them cut after the assistant's call), its no-tool and ask-back rows, and a replay of OUT/data/train-rag.jsonl (the
    first stage's file) with QA_WITH_TOOLS_SHARE of its plain Q&A rows shown tool definitions — shuffled."""
    import json

    from lawtune.errors import LawtuneError
    from lawtune.fsutil import atomic_open
    from lawtune.tools.generate import run as generate_tools

    report = generate_tools(out / "tools", n=TOOL_N, seed=seed, qa_dir=out / "data", tools_per_record=TOOLS_PER_RECORD)
    rng = random.Random(seed)
    by_kind: dict[str, list[str]] = {}
    for line in (out / "tools" / "train.jsonl").read_text(encoding="utf-8").splitlines():
        by_kind.setdefault(json.loads(line)["meta"]["kind"], []).append(line)
    replay = (out / "data" / RAG_TRAIN).read_text(encoding="utf-8").splitlines()
    by_kind["replay"], _ = qa_rows_with_tools(rng.sample(replay, len(replay)), seed=seed)
    picked: list[str] = []
    counts: dict[str, int] = {}
    for kind, share in TOOL_STAGE_SHARES.items():
        wanted = round(share * rows)
        pool = by_kind.get(kind, [])
        if len(pool) < wanted:
            raise LawtuneError(f"the tool stage wants {wanted} {kind} rows and has {len(pool)}: raise TOOL_N or lower "
                               "TOOL_STAGE_ROWS")
        chosen = pool[:wanted]
        if kind == "tool":
            cut = set(rng.sample(range(wanted), round(CALL_ONLY_SHARE * wanted)))
            chosen = [call_only(line) if index in cut else line for index, line in enumerate(chosen)]
            counts["call_only"] = len(cut)
        if kind == "replay":
            counts["replay_shown_tools"] = sum(1 for line in chosen if "tools" in json.loads(line))
        picked += chosen
        counts[kind] = len(chosen)
    rng.shuffle(picked)
    with atomic_open(out / "data" / TOOL_TRAIN) as handle:
        handle.write("".join(line + "\n" for line in picked))
    return {"rows": len(picked), "counts": counts, "generated": report.get("counts")}


def call_only(line: str) -> str:
    """A generated tool conversation cut after the assistant's call (user → call): the row trains the call alone.
    Its meta says so (`call_only`)."""
    import json

    record = json.loads(line)
    turns = record["conversations"]
    first = next(i for i, turn in enumerate(turns) if turn.get("role") == "assistant")
    record["conversations"] = turns[:first + 1]
    record["meta"] = {**record.get("meta", {}), "call_only": True}
    return json.dumps(record, ensure_ascii=False)


def qa_rows_with_tools(lines: list[str], share: float = QA_WITH_TOOLS_SHARE, seed: int = 0) -> tuple[list[str], int]:
    """The training lines with `share` of the plain Q&A rows (no RAG rows, no questions that want a tool:
    lawtune.tools.generate.TOOLISH) given TOOLS_PER_RECORD random built-in tool definitions, their answer unchanged:
    tools offered, none needed. Returns the lines and how many were given tools."""
    import json

    from lawtune.tools import builtin_tools
    from lawtune.tools.generate import TOOLISH

    rng = random.Random(seed)
    definitions = [tool.openai() for tool in builtin_tools()]
    out, offered = [], 0
    for line in lines:
        record = json.loads(line)
        question = next((m.get("content") or "" for m in record.get("conversations", []) if m.get("role") == "user"), "")
        plain = "rag" not in (record.get("meta") or {}) and not record.get("tools") and not TOOLISH.search(question)
        if plain and rng.random() < share:
            record["tools"] = rng.sample(definitions, TOOLS_PER_RECORD)
            line, offered = json.dumps(record, ensure_ascii=False), offered + 1
        out.append(line)
    return out, offered


def run(quick: bool = False, model: Optional[str] = None, out: Optional[Path] = None,
        max_steps: Optional[int] = None, console=None, tools: bool = False) -> dict:
    """Run the four steps, each in a fresh process of its own (`lawtune.phase_process`: no step inherits the memory an
    earlier one left, and this process holds no model); returns the compare result (with report paths) plus per-step
    seconds and memory."""
    from rich.console import Console

    from lawtune.errors import LawtuneError
    from lawtune.evaluation.compare import table
    from lawtune.evaluation.gate import describe
    from lawtune.phase_process import run_in_child

    console = console or Console()
    size = QUICK if quick else FULL
    out = Path(out or ("out/demo-quick" if quick else "out/demo")).resolve()
    for config in (DEMO_CONFIG, DEMO_TOOLS_CONFIG) if tools else (DEMO_CONFIG,):
        if not config.is_file() or not SAMPLE.is_file():
            raise LawtuneError(f"the demo needs {config} and {SAMPLE}, shipped in the package: reinstall lawtune")
    seconds: dict[str, float] = {}
    done = []  # each step's ChildDone: its value and peak RSS (its process + this one)

    def step(name: str, target, *args):
        started = time.perf_counter()
        finished = run_in_child(name, target, *args, error_log=out / "logs" / f"{name}-error.txt")
        seconds[name] = time.perf_counter() - started
        done.append(finished)
        return finished.value

    console.rule("1/4 prepare the bundled sample, and RAG-format training examples")
    report, rag, tool_rows = step("prepare", prepare_step, out, tools)
    console.print(f"splits: {report.get('splits', report.get('counts'))}; RAG format: {rag['added']} rows added "
                  f"to train ({rag['share']:.0%}; gold retrieved {rag['retrieved']}, injected {rag['injected']}, "
                  f"left out {rag['left_out']} of {rag['rewritten']})"
                  + (f"; tool stage: {tool_rows['rows']} rows {tool_rows['counts']}" if tool_rows else ""))

    console.rule("2/4 import the base model")
    model_dir = step("import", _resolve_model, model)
    console.print(f"base model: {model_dir}")

    console.rule(f"3/4 LoRA training (configs/{DEMO_CONFIG.name}" + (f", then configs/{DEMO_TOOLS_CONFIG.name})" if tools else ")"))
    steps = max_steps if max_steps is not None else size.max_steps
    run_dir = step("train", train_step, model_dir, out, steps, tools)

    console.rule("4/4 compare base vs tuned on the held-out test split")
    result = step("compare", compare_step, run_dir, out, size, tools, quick)

    console.print(table(result))
    console.print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + f", total {sum(seconds.values()):.0f}")
    highest = max(done, key=lambda finished: finished.peak_mib)
    console.print("memory (resident; each step in a process of its own, plus this one's):\n"
                  + "\n".join(f"  {finished.line()}" for finished in done)
                  + f"\n  peak of the demo {highest.peak_mib:,.0f} MiB ({highest.name})")
    console.print(f"report: {result['report_html']}  (Markdown: {result['report_md']})")
    if result["gate"] is not None:
        passed = result["gate"]["passed"]
        console.print(("[green]quality gate passed[/]" if passed else "[red]quality gate failed[/] "
                       "(`lawtune serve` will ask for --force)") + "\n" + describe(result["gate"]))
    return {**result, "seconds": seconds, "run_dir": run_dir, "memory": [finished.record() for finished in done],
            "peak_rss_mib": round(highest.peak_mib)}


# ---- the steps, each run in a process of its own by `run` (module-level: pickled by name)


def prepare_step(out: Path, tools: bool) -> tuple[dict, dict, Optional[dict]]:
    """Step 1: OUT/data from the bundled sample, the RAG-format mix, and with `tools` the tool stage's file."""
    from lawtune.data.prepare import run as prepare

    report = prepare([SAMPLE], out / "data")
    rag = rag_training_mix(out, report)
    return report, rag, tool_stage_file(out) if tools else None


def train_step(model_dir: Path, out: Path, steps: Optional[int], tools: bool) -> Path:
    """Step 3: configs/demo.yaml on OUT/data/train-rag.jsonl into OUT/run (resumed when a run was stopped), then with
    `tools` the tool stage from its adapter into OUT/run-tools; the last run folder."""
    from lawtune.training.train import run as train

    def overrides(train_file: Path, dev_file: Path, run: Path) -> list[str]:
        given = [f"model.name_or_path={model_dir}", f"data_config.train_file={train_file}",
                 f"data_config.val_file={dev_file}", f"training_args.output_dir={run}"]
        return given + ([f"training_args.max_steps={steps}"] if steps is not None else [])

    run_dir = train(DEMO_CONFIG, overrides(out / "data" / RAG_TRAIN, out / "data" / "dev.jsonl", out / "run"),
                    resume="auto")
    if tools:  # the tool stage, from the Q&A stage's adapter; its dev loss (best adapter) on the tool set's dev
        run_dir = train(DEMO_TOOLS_CONFIG, overrides(out / "data" / TOOL_TRAIN, out / "tools" / "dev.jsonl",
                                                     out / TOOL_RUN) + [f"model.init_adapter={run_dir}"],
                        resume="auto")
    return run_dir


def compare_step(run_dir: Path, out: Path, size: DemoSize, tools: bool, quick: bool) -> dict:
    """Step 4: `lawtune compare base RUN` on OUT/data/test.jsonl into OUT/report (gated unless `quick`)."""
    from lawtune.evaluation.compare import run as compare
    from lawtune.evaluation.gate import Gate
    from lawtune.evaluation.generation import GenerationSettings
    from lawtune.evaluation.settings import EvalOptions

    settings = GenerationSettings(max_new_tokens=size.max_new_tokens)
    return compare("base", run_dir, out / "data" / "test.jsonl", out / "report", settings=settings,
                   options=EvalOptions(mcq_limit=size.mcq_limit, limit=size.questions,
                                       tool_data=out / "tools" / "test.jsonl" if tools else None,
                                       tool_limit=size.tool_questions if tools else None),
                   gate=None if quick else Gate(**DEMO_GATE))


def demo_command(
    quick: bool = typer.Option(False, "--quick", help="Smoke run of a few minutes: 3 steps, 6 questions, short answers."),
    model: Optional[str] = typer.Option(None, "--model", help="Base model: imported name, local HF folder or .gguf (default: Gemma 3 270M)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default out/demo, or out/demo-quick)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override the number of training steps (of each stage with --tools)."),
    tools: bool = typer.Option(False, "--tools", help="Then a tool stage on generated tool-use conversations, from the "
                               "Q&A adapter, and measure the held-out tool questions (configs/demo-tools.yaml; longer: "
                               "see docs/tools.md)."),
) -> None:
    """The whole pipeline on the bundled sample: prepare → import → train → compare, then print the table.

    Example: lawtune demo --quick
    """
    run(quick=quick, model=model, out=out, max_steps=max_steps, tools=tools)


def register(app: typer.Typer) -> None:
    """Add `demo` to the root app."""
    app.command("demo")(demo_command)
