"""Tool-use measurement for `lawtune eval` / `compare`: does the model call the right tool, with exactly the
right arguments, and does its final answer state the figure the tool computed?

    lawtune eval runs/demo --data out/tools/test.jsonl                 # a tool set: records carry "tools"
    lawtune compare base runs/demo --data out/test.jsonl --tool-data out/tools/test.jsonl
    from lawtune.evaluation.tool_eval import evaluate_tools
    metrics, rows = evaluate_tools(loaded, read_tool_examples("out/tools/test.jsonl"), settings)

Each question is asked with its record's tool definitions (or `--tools builtin`) and answered through the agent
loop, batched over all questions: generate (each `<tool_call>` block under the lazy call grammar) → the rules of
`lawtune.tools.agent.Agent` (`read` the turn, `run_round`: each call under its timeout, a block that does not parse
answered with an error result) → generate again, at most `MAX_ROUNDS` model turns. What is expected comes from the
record (`lawtune tools generate` writes them): the first assistant turn's `tool_calls` (none for a question
that needs no tool, or one that lacks a figure and should be asked back), and `meta.figure`, the figure the
tool computed for the true arguments.

Metrics (percent; `tool_*` over the questions that need a tool, `no_tool_pct` over those that do not):
- `tool_call_parse_pct`: of the first turns that hold a `<tool_call>` block, those whose every block parses;
- `tool_choice_pct`: the first call names the expected tool;
- `tool_args_exact_pct`: ... and its arguments make the tool compute what the expected call makes it compute: both
  calls run (`run_tool_call`) to the same outcome — result, details, formula and articles — so `{"months": "41个月"}`
  is as right as `{"years": "3年", "months": "5个月"}`; a call the tool rejects is never right;
- `tool_args_same_keys_pct`: the stricter reading kept beside it: the same keys, each value equal as the tool reads it
  (`{"months": "41个月"}` against `{"years": "3年", "months": "5个月"}` is wrong here);
- `tool_figure_pct`: the final answer holds the expected figure (an amount in Arabic digits, `28,000`,
  `2.8万` too; a date as 2025年3月1日 / 2025-03-01 / 2025.3.1 / 2025/3/1);
- `no_tool_pct`: the first turn calls no tool; `ask_back_pct`: of the questions lacking a figure, those whose
  first turn calls nothing and asks (holds a question mark).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from lawtune.errors import LawtuneError

MAX_ROUNDS = 3  # model turns per question: a call, its answer, and one more call at most
CALL_TOKENS = 128  # budget of a turn that may hold a call: the JSON of one call is ~40-80 tokens
TOOL_INPUT_LENGTH = 4096  # prompt tokens kept: the tool definitions sit at the front and must not be cut


@dataclass
class ToolExample:
    """One question of a tool set and what a good answer does with it."""

    prompt: list[dict[str, Any]]  # the turns before the first assistant turn
    tools: list[dict[str, Any]]  # OpenAI tool definitions offered with the question
    expected: list[dict[str, Any]]  # [{"name", "arguments"}] of the first assistant turn; [] = answer without a tool
    kind: str  # "tool", "no_tool" or "ask_back"
    figure: Any = None  # the figure the final answer must state (number or ISO date), tool questions only
    reference: str = ""  # the reference final answer
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        return next((m.get("content") or "" for m in reversed(self.prompt) if m["role"] == "user"), "")


def carries_tools(path: str | Path) -> bool:
    """Whether the first record of a JSONL file has a `tools` list (then it is a tool set)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    return isinstance(record, dict) and isinstance(record.get("tools"), list)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return False


def read_tool_examples(path: str | Path, limit: int | None = None,
                       default_tools: list[dict[str, Any]] | None = None) -> list[ToolExample]:
    """The tool questions of a JSONL file; a LawtuneError names file:line of a record that cannot be used."""
    from lawtune.modeling.tool_format import call_name_and_arguments

    path = Path(path)
    if not path.is_file():
        raise LawtuneError(f"{path}: no such file; `lawtune tools generate -o DIR` writes a tool set (DIR/test.jsonl)")
    examples: list[ToolExample] = []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if limit is not None and len(examples) >= limit:
                break
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise LawtuneError(f"{where}: not valid JSON ({error.msg})") from None
            turns = record.get("conversations") if isinstance(record, dict) else None
            if not isinstance(turns, list) or not turns:
                raise LawtuneError(f"{where}: no 'conversations' list; a tool-set line is "
                                   '{"tools": [...], "conversations": [...], "meta": {...}}')
            tools = record.get("tools") or default_tools
            if not tools:
                raise LawtuneError(f"{where}: no 'tools' in the record; give them with --tools builtin")
            first = next((i for i, turn in enumerate(turns) if isinstance(turn, dict) and turn.get("role") == "assistant"), None)
            if first is None:
                raise LawtuneError(f"{where}: no assistant turn to compare with")
            try:
                expected = [dict(zip(("name", "arguments"), call_name_and_arguments(call)))
                            for call in turns[first].get("tool_calls") or []]
            except ValueError as error:
                raise LawtuneError(f"{where}: {error}") from None
            meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
            kind = meta.get("kind") or ("tool" if expected else "no_tool")
            final = next((t.get("content") or "" for t in reversed(turns) if t.get("role") == "assistant"), "")
            examples.append(ToolExample(prompt=turns[:first], tools=tools, expected=expected, kind=kind,
                                        figure=meta.get("figure"), reference=final, meta=meta))
    if not examples and limit != 0:
        raise LawtuneError(f"{path}: no tool questions in the file")
    return examples


# ---- the agent loop, batched over questions -------------------------------------------------------------------
def run_agent(loaded: Any, examples: list[ToolExample], settings: Any, implementations: list[Any],
              label: str = "", max_rounds: int = MAX_ROUNDS) -> list[dict[str, Any]]:
    """Answer every question through model → call → tool → model; one trace per question.

    A trace: `turns` (the text of each model turn), `calls` per turn ([{"name", "arguments"}]), `errors` per
    turn (blocks that did not parse), `results` (each call's tool output), `final` (the last turn's text without
    call blocks) and `rounds_exhausted` (the model was still calling after `max_rounds` turns)."""
    from lawtune.evaluation.generation import generate
    from lawtune.tools.agent import Agent

    agent = Agent(implementations, max_rounds=max_rounds)

    conversations = [list(example.prompt) for example in examples]
    traces = [{"turns": [], "calls": [], "errors": [], "results": [], "final": "", "rounds_exhausted": False}
              for _ in examples]
    active = list(range(len(examples)))
    for round_number in range(1, max_rounds + 1):
        if not active:
            break
        outputs = generate(loaded, [conversations[i] for i in active], settings,
                           description=f"{label} tools round {round_number}".strip(),
                           tools=[examples[i].tools for i in active])
        still = []
        for index, output in zip(active, outputs):
            trace, turn = traces[index], agent.read(output.text)
            trace["turns"].append(output.text)
            trace["calls"].append([{"name": name, "arguments": arguments} for name, arguments in turn.calls])
            trace["errors"].append(turn.errors)
            trace["final"] = turn.content
            if turn.final:
                continue
            if round_number == max_rounds:
                trace["rounds_exhausted"] = True
                continue
            # the agent's own rules: each call run under its timeout, a block that does not parse answered with
            # an error result the model reads, and the model asked again
            appended, records = agent.run_round(turn, round_number)
            conversations[index] += appended
            trace["results"] += [{"name": r.name, "ok": r.ok, "content": r.result} for r in records]
            still.append(index)
        active = still
    return traces


# ---- scoring ---------------------------------------------------------------------------------------------------
def same_arguments(got: dict[str, Any], expected: dict[str, Any], tool: Any = None) -> bool:
    """Equal argument objects: the same keys, and values equal as the tool reads them (`tool`: its lawtune Tool;
    "八千" = "8000元" = 8000, "2024年3月1号" = "2024-03-01", lawtune.tools.figures) — what the tool computes with.
    Without a tool: numbers by value (8000 == 8000.0), strings without outer spaces."""
    if not isinstance(got, dict) or set(got) != set(expected):
        return False
    if tool is not None:
        from lawtune.tools.tool import ToolError

        try:
            got, expected = tool.validate(got), tool.validate(expected)
        except ToolError:
            return False
    return all(_same_value(got[key], expected[key]) for key in expected)


def same_computation(name: str, got: dict[str, Any], expected: dict[str, Any], tools: list[Any]) -> bool:
    """Whether calling tool `name` with `got` computes what it computes with `expected`: both calls succeed
    (`run_tool_call`) and their outcomes are equal — result, details, formula and articles (numbers by value).
    `{"months": "41个月"}` = `{"years": "3年", "months": "5个月"}` = `{"years": "3年5个月"}`; a left-out `unlawful`
    halves the result, an extra figure that changes nothing (a local average wage far above the wage) is right."""
    from lawtune.tools import run_tool_call

    if not isinstance(got, dict) or not any(tool.name == name for tool in tools):
        return False
    mine, theirs = run_tool_call(tools, name, got), run_tool_call(tools, name, expected)
    return mine.ok and theirs.ok and _same_tree(mine.content, theirs.content)


def _same_tree(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same_tree(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_tree(x, y) for x, y in zip(a, b))
    return _same_value(a, b)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) < 1e-9
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return a == b


_NUMBER = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(万)?")
_DATES = (re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]"),
          re.compile(r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})"))


def numbers_in(text: str) -> list[float]:
    """Every amount written in Arabic digits: 28000, 28,000, 2.8万 (= 28000), 1.5."""
    values = []
    for whole, decimals, wan in _NUMBER.findall(text):
        value = float(whole.replace(",", "") + (decimals or ""))
        values.append(value * 10000 if wan else value)
    return values


def dates_in(text: str) -> list[date]:
    found = []
    for pattern in _DATES:
        for year, month, day in pattern.findall(text):
            try:
                found.append(date(int(year), int(month), int(day)))
            except ValueError:
                continue
    return found


def holds_figure(text: str, figure: Any) -> bool:
    """Whether `text` states `figure`: an ISO date string in any usual form, or a number (to the cent)."""
    if figure is None:
        return False
    if isinstance(figure, str):
        try:
            return date.fromisoformat(figure) in dates_in(text)
        except ValueError:
            return figure in text
    return any(abs(value - float(figure)) < 0.005 for value in numbers_in(text))


def score_trace(example: ToolExample, trace: dict[str, Any], implementations: list[Any] | None = None) -> dict[str, Any]:
    """Per-question verdicts (None where a verdict does not apply to this kind of question); `implementations`:
    the tools that run the arguments (exact arguments: the same computation, `same_computation`; without the
    expected tool among them, the strict reading `same_arguments`)."""
    first_text = trace["turns"][0] if trace["turns"] else ""
    first_calls = trace["calls"][0] if trace["calls"] else []
    attempted = "<tool_call>" in first_text
    scores: dict[str, Any] = {"called": bool(first_calls) or attempted,
                              "parsed": (not trace["errors"][0]) if attempted and trace["errors"] else None}
    if example.expected:
        want = example.expected[0]
        got = first_calls[0] if first_calls else None
        scores["tool_right"] = got is not None and got["name"] == want["name"]
        tool = next((t for t in implementations or [] if t.name == want["name"]), None)
        scores["args_same_keys"] = scores["tool_right"] and same_arguments(got["arguments"], want["arguments"], tool)
        # with the tools at hand, "exact" is what the call computes; without them, the strict reading
        scores["args_exact"] = scores["tool_right"] and (
            same_computation(want["name"], got["arguments"], want["arguments"], implementations)
            if tool is not None else scores["args_same_keys"])
        scores["figure"] = holds_figure(trace["final"], example.figure)
    else:
        scores["no_call"] = not scores["called"]
        if example.kind == "ask_back":
            scores["asked_back"] = scores["no_call"] and ("？" in trace["final"] or "?" in trace["final"])
    return scores


def _pct(values: list[bool]) -> float:
    return round(100 * sum(values) / len(values), 2) if values else 0.0


def tool_metrics(examples: list[ToolExample], scores: list[dict[str, Any]]) -> dict[str, Any]:
    """The shares of the module docstring, with the counts they are taken over."""
    tool = [s for e, s in zip(examples, scores) if e.expected]
    plain = [s for e, s in zip(examples, scores) if not e.expected]
    asked = [s for e, s in zip(examples, scores) if e.kind == "ask_back"]
    parsed = [s["parsed"] for s in scores if s["parsed"] is not None]
    return {
        "tool_choice_pct": _pct([s["tool_right"] for s in tool]),
        "tool_args_exact_pct": _pct([s["args_exact"] for s in tool]),
        "tool_args_same_keys_pct": _pct([s["args_same_keys"] for s in tool]),
        "tool_figure_pct": _pct([s["figure"] for s in tool]),
        "tool_call_parse_pct": _pct(parsed),
        "no_tool_pct": _pct([s["no_call"] for s in plain]),
        "ask_back_pct": _pct([s["asked_back"] for s in asked]),
        "tool_counts": {"tool_questions": len(tool), "no_tool_questions": len(plain), "ask_back_questions": len(asked),
                        "turns_with_a_call_block": len(parsed)},
    }


def evaluate_tools(loaded: Any, examples: list[ToolExample], settings: Any, implementations: list[Any] | None = None,
                   label: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the agent loop on every question and score it: (metrics, one prediction row per question).

    `settings`: the eval's GenerationSettings; each model turn gets at most max(CALL_TOKENS, its budget capped
    at 256) new tokens (a call, or a short answer stating a figure) and the prompt is never cut."""
    from lawtune.tools import builtin_tools

    implementations = implementations if implementations is not None else builtin_tools()
    budget = min(max(settings.max_new_tokens or 0, CALL_TOKENS), 256)
    turn_settings = replace(settings, max_new_tokens=budget,
                            max_input_length=max(settings.max_input_length, TOOL_INPUT_LENGTH))
    traces = run_agent(loaded, examples, turn_settings, implementations, label=label)
    scores = [score_trace(example, trace, implementations) for example, trace in zip(examples, traces)]
    metrics = tool_metrics(examples, scores)
    metrics["tool_generation"] = {"max_new_tokens_per_turn": budget, "max_rounds": MAX_ROUNDS,
                                  "max_input_length": turn_settings.max_input_length}
    rows = [{"prompt": example.question, "kind": example.kind, "expected": example.expected, "figure": example.figure,
             "reference": example.reference, **trace, "scores": score} for example, trace, score in
            zip(examples, traces, scores)]
    return metrics, rows


# ---- the tool set of one eval / compare -------------------------------------------------------------------------
TOOL_METRICS = ("tool_choice_pct", "tool_args_exact_pct", "tool_args_same_keys_pct", "tool_figure_pct",
                "tool_call_parse_pct", "no_tool_pct", "ask_back_pct")
TOOLS_CHOICES = ("builtin",)


@dataclass
class ToolSet:
    path: Path
    examples: list[ToolExample]
    definitions: str  # "records": each record's own tools; "builtin": every built-in tool, for every question
    limit: int | None

    def measure(self, loaded: Any, settings: Any, record: dict[str, Any], out_dir: Path,
                label: str = "") -> list[dict[str, Any]]:
        """Run the tool questions on `loaded`; their metrics join record["metrics"], the details record["tools"],
        and one row per question goes to OUT/tool_predictions.jsonl (and is returned)."""
        import time

        from lawtune.fsutil import atomic_open, sha256_file

        started = time.perf_counter()
        metrics, rows = evaluate_tools(loaded, self.examples, settings, label=label)
        record.setdefault("timing", {})["tools_s"] = round(time.perf_counter() - started, 1)
        record["metrics"].update({key: metrics[key] for key in TOOL_METRICS})
        record["tools"] = {"path": str(self.path), "sha256": sha256_file(self.path), "count": len(self.examples),
                           "limit": self.limit, "definitions": self.definitions, "counts": metrics["tool_counts"],
                           "generation": metrics["tool_generation"]}
        with atomic_open(Path(out_dir) / "tool_predictions.jsonl") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        return rows


def verdict_text(row: dict[str, Any]) -> str:
    """One question's verdicts for the report: 工具✓ 参数✗ 数额✗, or 未调用✓ (no call where none is needed)."""
    scores = row["scores"]
    mark = {True: "✓", False: "✗"}
    if row["expected"]:
        return f"工具{mark[scores['tool_right']]} 参数{mark[scores['args_exact']]} 数额{mark[scores['figure']]}"
    return f"未调用{mark[scores['no_call']]}"


def call_text(call: dict[str, Any] | None) -> str:
    return f"{call['name']}({json.dumps(call['arguments'], ensure_ascii=False)})" if call else "—"


def report_rows(base_rows: list[dict[str, Any]], tuned_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per tool question, base beside tuned: the expected call, each side's first call, final answer, verdicts."""
    rows = []
    for b, t in zip(base_rows, tuned_rows):
        first = lambda row: row["calls"][0][0] if row["calls"] and row["calls"][0] else None  # noqa: E731
        rows.append({"prompt": b["prompt"], "kind": b["kind"],
                     "expected": call_text(b["expected"][0] if b["expected"] else None),
                     "base_call": call_text(first(b)), "tuned_call": call_text(first(t)),
                     "base": b["final"], "tuned": t["final"], "base_verdict": verdict_text(b),
                     "tuned_verdict": verdict_text(t)})
    return rows


def open_tool_set(data: Path, tool_data: str | Path | None, tools: str | None, limit: int | None) -> ToolSet | None:
    """The tool set an eval measures: `tool_data`, else `data` when its records carry `tools` or `tools` is given
    (then every question of `data` is asked with the built-in tools); None when there is none."""
    if tools is not None and tools not in TOOLS_CHOICES:
        raise LawtuneError(f"--tools {tools!r}: the only tool set is 'builtin' (the built-in legal tools)")
    path = Path(tool_data) if tool_data is not None else data if (tools or carries_tools(data)) else None
    if path is None:
        return None
    definitions = None
    if tools == "builtin":
        from lawtune.tools import builtin_tools

        definitions = [tool.openai() for tool in builtin_tools()]
    examples = read_tool_examples(path, limit, default_tools=definitions)
    if definitions is not None:  # --tools builtin: every question sees every built-in tool
        examples = [replace(example, tools=definitions) for example in examples]
    return ToolSet(path, examples, "builtin" if definitions else "records", limit)
