"""`lawtune tools generate`: questions right by construction, calls that fit their schemas, real tool results,
answers that state the figure, and a held-out test split."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from lawtune.evaluation.tool_eval import holds_figure
from lawtune.tools import builtin_tools, run_tool_call
from lawtune.tools.cases import BUILDERS, UNLAWFUL_ENDINGS
from lawtune.tools.generate import run
from lawtune.tools.periods import parse_day
from lawtune.tools.phrasing import (DATE_STYLES, amount_styles, amount_text, date_text, duration_styles, duration_text,
                                    small_chinese)

N = 280


@pytest.fixture(scope="module")
def qa_dir(tmp_path_factory) -> Path:
    from lawtune import bundled
    from lawtune.data.prepare import run as prepare

    folder = tmp_path_factory.mktemp("qa")
    prepare([bundled.sample_csv()], folder)
    return folder


@pytest.fixture(scope="module")
def generated(qa_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tools")
    run(out, n=N, seed=3, qa_dir=qa_dir, mix_share=0.25)
    return out


def records(folder: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def all_records(folder: Path) -> list[dict]:
    return [r for split in ("train", "dev", "test") for r in records(folder, split)]


JSON_TYPES = {"number": (int, float), "integer": (int,), "string": (str,), "boolean": (bool,)}


def schema_problems(arguments: dict, schema: dict) -> list[str]:
    """JSON Schema checks the generator's calls must pass: known keys, required keys, types, ranges, dates."""
    problems = [f"unknown {key}" for key in arguments if key not in schema["properties"]]
    problems += [f"missing {key}" for key in schema.get("required", []) if key not in arguments]
    for key, value in arguments.items():
        spec = schema["properties"].get(key, {})
        kinds = spec.get("type")
        kinds = [kinds] if isinstance(kinds, str) else kinds or []
        if kinds and not any(isinstance(value, JSON_TYPES[kind]) and (kind == "boolean") == isinstance(value, bool)
                             for kind in kinds):
            problems.append(f"{key}={value!r} is not {kinds}")
        if not isinstance(value, str) and ("minimum" in spec and value < spec["minimum"]
                                           or "exclusiveMinimum" in spec and value <= spec["exclusiveMinimum"]):
            problems.append(f"{key}={value!r} below its minimum")
        if spec.get("format") == "date" and not isinstance(parse_day(value), date):
            problems.append(f"{key}={value!r} is not a date")
    return problems


def test_every_call_fits_the_offered_schema_and_the_tool(generated):
    tools = {tool.name: tool for tool in builtin_tools()}
    calls = 0
    for record in all_records(generated):
        offered = {t["function"]["name"]: t["function"]["parameters"] for t in record["tools"]}
        assert len(offered) == 3
        for turn in record["conversations"]:
            for call in turn.get("tool_calls", []):
                name, arguments = call["function"]["name"], json.loads(call["function"]["arguments"])
                assert name in offered
                assert schema_problems(arguments, offered[name]) == [], (name, arguments)
                tools[name].validate(arguments)  # the tool's own pydantic check of the same signature
                calls += 1
    assert calls >= 0.6 * N


def forms_of(key: str, value) -> set[str]:
    """Every way the generator may write one argument's value into a question (the value as the tool read it)."""
    if isinstance(value, bool) or value is None:
        return set()
    if key in ("monthly_wage", "agreed_wage"):
        value = int(value)
        forms = {amount_text(value, style) for style in amount_styles(value)}
        forms |= {f.upper() for f in forms} | {f.removesuffix("元") for f in forms}
        return forms | {f + unit for f in forms for unit in ("元", "块")}
    if isinstance(value, date):
        return {date_text(value, style) for style in DATE_STYLES}
    value = int(value)
    if key.endswith("hours"):
        return {f"{value}小时", f"{value}个小时", f"{small_chinese(value)}个小时"}
    if key.endswith("years"):
        return {f"{value}年", f"{small_chinese(value)}年"}
    forms = {f"{value}个月", f"{small_chinese(value)}个月"}  # months, months_without_contract, contract_months
    return forms | ({"半", "半年"} if value == 6 else set())


def test_questions_state_exactly_the_arguments_of_their_call():
    """Each argument is words of the question (a span copied as written), and the tool reads them back to a value
    the phrasing functions write in exactly those words."""
    rng = random.Random(7)
    tools = {tool.name: tool for tool in builtin_tools()}
    for name, build in BUILDERS.items():
        for _ in range(150):
            case = build(rng)
            read = tools[name].validate(case.arguments)
            for key, written in case.arguments.items():
                if isinstance(written, str):
                    assert written in case.question, (name, key, written, case.question)
                    assert written in forms_of(key, read[key]), (name, key, written, read[key])
            if case.arguments.get("unlawful"):
                assert any(ending in case.question for ending in UNLAWFUL_ENDINGS)
            if case.arguments.get("wage_arrears_during_employment"):
                assert "拖欠" in case.question
            assert case.short and case.short != case.question and "？" in case.ask


def test_tool_turns_hold_the_real_result_and_the_answer_states_it(generated):
    tools = builtin_tools()
    for record in all_records(generated):
        if record["meta"]["kind"] != "tool":
            continue
        user, call_turn, tool_turn, answer = record["conversations"]
        call = call_turn["tool_calls"][0]
        outcome = run_tool_call(tools, call["function"]["name"], json.loads(call["function"]["arguments"]))
        assert tool_turn["content"] == outcome.message_content() and tool_turn["tool_call_id"] == call["id"]
        assert holds_figure(answer["content"], record["meta"]["figure"]), answer["content"]
        assert all(article in answer["content"] for article in outcome.content["articles"])


def test_splits_are_disjoint_and_the_test_split_is_held_out(generated, qa_dir):
    questions = {split: {r["conversations"][0]["content"] for r in records(generated, split)}
                 for split in ("train", "dev", "test")}
    assert not questions["train"] & questions["test"] and not questions["train"] & questions["dev"]
    assert not questions["dev"] & questions["test"]
    qa_test = {json.loads(line)["conversations"][0]["content"]
               for line in (qa_dir / "test.jsonl").read_text(encoding="utf-8").splitlines()}
    plain_test = {r["conversations"][0]["content"] for r in records(generated, "test") if r["meta"]["kind"] == "no_tool"}
    assert plain_test and plain_test <= qa_test  # no-tool test questions are Q&A test questions
    kinds = {r["meta"]["kind"] for r in records(generated, "test")}
    assert kinds == {"tool", "no_tool", "ask_back"}
    mixed = [json.loads(line) for line in (generated / "train-mix.jsonl").read_text(encoding="utf-8").splitlines()]
    mixed_questions = {r["conversations"][0]["content"] for r in mixed}
    assert not mixed_questions & questions["test"] and not mixed_questions & qa_test
    report = json.loads((generated / "report.json").read_text(encoding="utf-8"))
    assert report["mix"]["tool_rows"] == sum("tools" in r for r in mixed)
    assert report["mix"]["qa_rows"] == sum("tools" not in r for r in mixed)


def test_same_seed_gives_the_same_bytes(generated, qa_dir, tmp_path):
    run(tmp_path, n=N, seed=3, qa_dir=qa_dir, mix_share=0.25)
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "train-mix.jsonl"):
        assert (tmp_path / name).read_bytes() == (generated / name).read_bytes()
    run(tmp_path, n=N, seed=4, qa_dir=qa_dir)
    assert (tmp_path / "test.jsonl").read_bytes() != (generated / "test.jsonl").read_bytes()
    assert not (tmp_path / "train-mix.jsonl").exists()


def test_cli_writes_the_set_and_refuses_bad_options_in_one_line(qa_dir, tmp_path):
    command = [sys.executable, "-m", "lawtune.cli", "tools", "generate", "-o", str(tmp_path / "t")]
    done = subprocess.run([*command, "--n", "60", "--qa", str(qa_dir)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t" / "test.jsonl").is_file() and (tmp_path / "t" / "report.json").is_file()
    bad = subprocess.run([*command, "--mix-share", "0.3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--qa" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run([*command, "--qa", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert bad.returncode == 2 and "lawtune prepare" in bad.stderr and "Traceback" not in bad.stderr


def test_the_call_rules_allow_every_generated_call_and_its_answer_ends(generated):
    """The grammar's rules never block the right call (`call_rules`: figure spans, `x-needs-one-of`, `x-said-as`
    booleans named in the question), and the generated answer after the result states what `--tool-result-figure`
    holds an answer to (`result_figures`): the rule asks for no figure the training answers leave out."""
    from lawtune.tools.constrain import call_rules, result_figures, states_figures
    from tool_schemas import fits, ways

    seen = set()
    for record in all_records(generated):
        turns = record["conversations"]
        if record["meta"]["kind"] != "tool":
            continue
        call = turns[1]["tool_calls"][0]["function"]
        allowed = {f["name"]: f["parameters"] for f in call_rules(record["tools"], turns[:1])}
        assert call["name"] in allowed, (call, turns[0]["content"])
        arguments = json.loads(call["arguments"])
        # one of the schema's ways (a length in years and months: `anyOf`) takes the whole call
        assert any(fits(way, arguments) for way in ways(allowed[call["name"]])), \
            (arguments, allowed[call["name"]])
        seen.update(arguments)
        figures = result_figures(turns[:3])
        assert figures is not None and states_figures(turns[3]["content"], figures), (figures, turns[3]["content"])
    assert "open_ended" in seen  # the said_as boolean is exercised
