"""`lawtune tools generate -o DIR`: Chinese tool-use conversations for the built-in tools, with a held-out test split.

    lawtune tools generate -o out/tools                        # 1,200 conversations, seed 0
    lawtune tools generate -o out/tools --qa out --mix-share 0.25   # + out/tools/train-mix.jsonl for training
    from lawtune.tools.generate import run; report = run(Path("out/tools"), n=1200, seed=0, qa_dir=Path("out"))

Three kinds of conversation, each offered `--tools-per-record` built-in tool definitions (`tools` on each record:
the one the question needs among random others; 0 = all of them):
- **tool** (70 %): a question stating its figures in one of many written forms (8000 / 八千 / 0.8万 / 8k;
  3年零5个月 / 三年五个月 / 41个月 / start and end dates), the assistant's call with exactly the true arguments
  (`lawtune.tools.cases`), the tool's result — the tool is really run (`run_tool_call`) — and a final answer
  that states the figure and cites the articles the tool returned;
- **no_tool** (20 %): a real question of the Q&A data answered directly with its real answer, no call
  (questions about compensation, overtime, leave, probation or deadlines are left out: they want a tool);
- **ask_back** (10 %): a tool question with a needed figure left out; the assistant asks for it.

Splits: a tool or ask-back conversation goes to train / dev / test by the hash of its question and `seed`
(5 % dev, 10 % test, `lawtune.data.split`); a no-tool conversation keeps the split its Q&A question has in
`lawtune prepare`'s output (`--qa DIR`, else the bundled sample prepared with the default settings), so the
Q&A test questions stay unseen too. **test.jsonl is held out**: nothing here or in the recipes trains on it;
`train-mix.jsonl` (`--mix-share`) is DIR's train split mixed into the Q&A train split and nothing else.
Writes DIR/{train,dev,test}.jsonl, DIR/report.json (counts per split, kind and tool; seed; sources and hashes)
and, with `--mix-share`, DIR/train-mix.jsonl. Same arguments, same files, byte for byte.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from lawtune.data.split import SPLITS, assign, bucket
from lawtune.errors import LawtuneError
from lawtune.fsutil import atomic_open, atomic_write_json, sha256_file

DEFAULT_N = 1200
KIND_SHARES = {"tool": 0.7, "no_tool": 0.2, "ask_back": 0.1}
DEV_RATIO, TEST_RATIO = 0.05, 0.10
# Tool definitions shown with each question: the one it needs among others. All seven cost ~2,000 prompt tokens
# with the Gemma tokenizer, three ~850: the CPU demo trains on three (0 = every built-in tool).
DEFAULT_TOOLS_PER_RECORD = 3
MAX_TRIES = 50  # draws per conversation before a builder is declared unable to make a new question
# Q&A questions that ask for a figure one of the tools computes: not "no tool" examples.
TOOLISH = re.compile(r"补偿|赔偿金|加班|年假|年休假|试用期|仲裁|时效|二倍工资|双倍工资")


# ---- one conversation ------------------------------------------------------------------------------------------
def final_answer(tool: str, content: dict[str, Any]) -> tuple[str, Any]:
    """The assistant's answer after the tool result: (text, the figure it states).

    It leads with the figure, shows the computation (the formula steps holding '='; a deadline's first step)
    and cites every article the tool returned. Amounts are written in Arabic digits, dates as 2025年3月17日."""
    from lawtune.tools.periods import day_text

    result, details = content["result"], content.get("details") or {}
    steps = [s.rstrip("。") for s in content["formula"].split("；")]
    shown = [s for s in steps if "=" in s][-2:] or steps[:2 if tool == "annual_leave_days" else 1]
    if tool == "severance_pay":
        lead, figure = f"按您说的情况，公司应支付{details.get('kind', '经济补偿')}{result}元", result
    elif tool == "double_wage_no_contract":
        lead, figure = f"公司应另行支付未签书面劳动合同的二倍工资差额{result}元", result
    elif tool == "overtime_pay":
        lead, figure = f"您这个月的加班费合计不低于{result}元", result
    elif tool in ("arbitration_deadline", "litigation_deadline"):
        what = "申请劳动仲裁的最后一天" if tool == "arbitration_deadline" else "诉讼时效届满日"
        lead, figure = f"{what}是{day_text(_day(result))}（{details.get('weekday', '')}）", result
    elif tool == "probation_limits":
        months, floor = result["max_probation_months"], result["min_probation_wage"]
        lead = f"试用期最长{months}个月" if months else "不得约定试用期"
        figure = floor if floor is not None else (f"{months}个月" if months else "不得约定试用期")
        if floor is not None:
            lead += f"，试用期月工资不得低于{floor}元"
    elif tool == "annual_leave_days":
        lead, figure = (f"您每年可以享受带薪年休假{result}天", f"{result}天") if result else ("您还不享受带薪年休假", "不享受")
    else:
        raise LawtuneError(f"no final-answer wording for tool {tool!r}")
    text = f"{lead}。计算：{'；'.join(shown)}。依据：{'、'.join(content['articles'])}。"
    return text, figure


def _day(iso: str):
    from datetime import date

    return date.fromisoformat(iso)


def tool_conversation(case: Any, tools: list[Any]) -> tuple[list[dict[str, Any]], Any]:
    """user → assistant call → tool result (the tool really run) → final answer; and the figure."""
    from lawtune.tools import run_tool_call

    outcome = run_tool_call(tools, case.tool, case.arguments)
    if not outcome.ok:  # a builder wrote arguments its tool rejects: a bug here, not a user problem
        raise LawtuneError(f"generated arguments for {case.tool} were rejected: {outcome.content['error']} "
                           f"(arguments {case.arguments}, question {case.question!r})")
    answer, figure = final_answer(case.tool, outcome.content)
    arguments = json.dumps(case.arguments, ensure_ascii=False)
    return [
        {"role": "user", "content": case.question},
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": case.tool, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_0", "name": case.tool, "content": outcome.message_content()},
        {"role": "assistant", "content": answer},
    ], figure


def _states_figure_in_question(case: Any, figure: Any) -> bool:
    """A figure the question already states would let an echo pass for a computed answer: draw again."""
    return isinstance(figure, (int, float)) and any(abs(float(figure) - value) < 0.005 for value in case.said)


def check_builders(tools: list[Any], seed: int = 0) -> None:
    """Every builder's arguments must validate against its tool's schema (catches a renamed parameter)."""
    from lawtune.tools.cases import BUILDERS
    from lawtune.tools.tool import ToolError

    names = {tool.name: tool for tool in tools}
    for name, build in BUILDERS.items():
        if name not in names:
            raise LawtuneError(f"the generator has questions for {name!r} but builtin_tools() has no such tool")
        case = build(random.Random(seed))
        try:
            names[name].validate(case.arguments)
        except ToolError as error:
            raise LawtuneError(f"the generator's arguments for {name} no longer fit its schema: {error}") from None


# ---- the Q&A pool for no-tool questions -------------------------------------------------------------------------
def qa_pool(qa_dir: Path | None) -> tuple[dict[str, list[list[dict[str, str]]]], dict[str, Any]]:
    """Q&A conversations per split (questions that want a tool left out) and where they came from."""
    from lawtune.data.conversations import read_examples

    def read(folder: Path) -> dict[str, list[list[dict[str, str]]]]:
        pool = {}
        for split in SPLITS:
            pool[split] = [e.messages for e in read_examples(folder / f"{split}.jsonl")
                           if not TOOLISH.search(e.question)]
        return pool

    if qa_dir is not None:
        missing = [s for s in SPLITS if not (Path(qa_dir) / f"{s}.jsonl").is_file()]
        if missing:
            raise LawtuneError(f"{qa_dir}: no {', '.join(s + '.jsonl' for s in missing)}; give --qa the output "
                               "folder of `lawtune prepare` (e.g. lawtune prepare data/legal_qa_sample.csv -o out)")
        return read(Path(qa_dir)), {"qa_dir": str(qa_dir),
                                    "sha256": {s: sha256_file(Path(qa_dir) / f"{s}.jsonl") for s in SPLITS}}
    from lawtune import bundled
    from lawtune.data.prepare import run as prepare

    with tempfile.TemporaryDirectory(prefix="lawtune-tools-qa-") as folder:
        prepare([bundled.sample_csv()], Path(folder))
        return read(Path(folder)), {"qa_dir": None, "prepared_from": str(bundled.sample_csv()),
                                    "sha256": sha256_file(bundled.sample_csv())}


# ---- the whole set -----------------------------------------------------------------------------------------------
def build(n: int, seed: int, pool: dict[str, list[list[dict[str, str]]]], tools: list[Any],
          tools_per_record: int = DEFAULT_TOOLS_PER_RECORD) -> dict[str, list[dict[str, Any]]]:
    """Records per split; deterministic for (n, seed, pool, tools_per_record)."""
    from lawtune.tools.cases import BUILDERS

    rng = random.Random(seed)
    by_name = {tool.name: tool.openai() for tool in tools}
    names = list(BUILDERS)
    per_record = min(tools_per_record or len(by_name), len(by_name))

    def offered(target: str | None) -> list[dict[str, Any]]:
        """The tool definitions shown with one question: the one it needs (if any) among random others."""
        others = [name for name in by_name if name != target]
        chosen = ([target] if target else []) + rng.sample(others, per_record - (1 if target else 0))
        rng.shuffle(chosen)
        return [by_name[name] for name in chosen]

    wanted = {kind: round(n * share) for kind, share in KIND_SHARES.items()}
    wanted["no_tool"] = n - wanted["tool"] - wanted["ask_back"]
    splits: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    seen: set[str] = set()

    def place(question: str, record: dict[str, Any], split: str | None = None) -> None:
        seen.add(question)
        splits[split or assign(bucket(question, seed), DEV_RATIO, TEST_RATIO)].append(record)

    for index in range(wanted["tool"]):
        name = names[index % len(names)]
        for _ in range(MAX_TRIES):
            case = BUILDERS[name](rng)
            if case.question in seen:
                continue
            messages, figure = tool_conversation(case, tools)
            if not _states_figure_in_question(case, figure):
                break
        else:
            raise LawtuneError(f"could not draw a new {name} question in {MAX_TRIES} tries; lower --n")
        place(case.question, {"tools": offered(name), "conversations": messages,
                              "meta": {"kind": "tool", "tool": name, "figure": figure}})
    for index in range(wanted["ask_back"]):
        name = names[index % len(names)]
        case = next((c for c in (BUILDERS[name](rng) for _ in range(MAX_TRIES)) if c.short not in seen), None)
        if case is None:  # short questions have fewer forms: a repeat is skipped, not forced
            continue
        place(case.short, {"tools": offered(name), "conversations": [{"role": "user", "content": case.short},
                                                                   {"role": "assistant", "content": case.ask}],
                           "meta": {"kind": "ask_back", "tool": name}})
    # no-tool questions keep their Q&A split; test and dev get their shares of them
    quota = {"test": round(wanted["no_tool"] * TEST_RATIO), "dev": round(wanted["no_tool"] * DEV_RATIO)}
    quota["train"] = wanted["no_tool"] - quota["test"] - quota["dev"]
    for split in SPLITS:
        for messages in rng.sample(pool[split], min(quota[split], len(pool[split]))):
            question = next(m["content"] for m in messages if m["role"] == "user")
            place(question, {"tools": offered(None), "conversations": messages,
                             "meta": {"kind": "no_tool", "tool": None}}, split)
    for records in splits.values():
        rng.shuffle(records)  # kinds interleaved, so `--limit N` on test.jsonl takes a mix
    return splits


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with atomic_open(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def mix(qa_train: Path, tool_train: list[dict[str, Any]], share: float, seed: int) -> tuple[list[Any], dict[str, Any]]:
    """The Q&A training rows plus tool-set training rows making up `share` of the result, shuffled."""
    if not 0 < share < 1:
        raise LawtuneError(f"--mix-share must be between 0 and 1 (the tool conversations' share), got {share}")
    qa_rows = [json.loads(line) for line in qa_train.read_text(encoding="utf-8").splitlines() if line.strip()]
    want = round(share / (1 - share) * len(qa_rows))
    taken = tool_train[:want]
    rows = qa_rows + taken
    random.Random(seed).shuffle(rows)
    return rows, {"qa_train": str(qa_train), "qa_rows": len(qa_rows), "tool_rows": len(taken),
                  "tool_rows_wanted": want, "share_requested": share,
                  "share": round(len(taken) / max(len(rows), 1), 4)}


def run(out_dir: Path, n: int = DEFAULT_N, seed: int = 0, qa_dir: Path | None = None,
        mix_share: float | None = None, tools_per_record: int = DEFAULT_TOOLS_PER_RECORD) -> dict[str, Any]:
    """Generate the tool set into `out_dir`; returns the report (also out_dir/report.json)."""
    import lawtune
    from lawtune.tools import builtin_tools

    if n < 20:
        raise LawtuneError(f"--n must be at least 20 (every tool needs questions in every split), got {n}")
    if mix_share is not None and qa_dir is None:
        raise LawtuneError("--mix-share mixes into the Q&A train split: give --qa DIR (the output of lawtune prepare)")
    tools = builtin_tools()
    check_builders(tools, seed)
    pool, qa_source = qa_pool(qa_dir)
    if tools_per_record < 0:
        raise LawtuneError(f"--tools-per-record must be ≥ 0 (0 = all {len(tools)} built-in tools), got {tools_per_record}")
    splits = build(n, seed, pool, tools, tools_per_record)
    out_dir = Path(out_dir)
    (out_dir / "report.json").unlink(missing_ok=True)  # no stale report beside new files
    for split, records in splits.items():
        write_jsonl(out_dir / f"{split}.jsonl", records)
    report: dict[str, Any] = {
        "lawtune_version": lawtune.__version__, "command": "lawtune tools generate", "n": n, "seed": seed,
        "kind_shares": KIND_SHARES, "dev_ratio": DEV_RATIO, "test_ratio": TEST_RATIO,
        "tools": [tool.name for tool in tools], "tools_per_record": tools_per_record or len(tools), "qa": qa_source,
        "counts": {split: dict(Counter(r["meta"]["kind"] for r in records)) for split, records in splits.items()},
        "tool_counts": {split: dict(Counter(r["meta"]["tool"] for r in records if r["meta"]["kind"] == "tool"))
                        for split, records in splits.items()},
        "held_out": "test.jsonl is for evaluation only: no recipe trains on it, train-mix.jsonl holds train rows only",
    }
    if mix_share is not None:
        rows, report["mix"] = mix(Path(qa_dir) / "train.jsonl", splits["train"], mix_share, seed)
        write_jsonl(out_dir / "train-mix.jsonl", rows)
    else:
        (out_dir / "train-mix.jsonl").unlink(missing_ok=True)  # a mix from an earlier run would not match
    report["sha256"] = {path.name: sha256_file(path) for path in sorted(out_dir.glob("*.jsonl"))}
    atomic_write_json(out_dir / "report.json", report)
    return report
