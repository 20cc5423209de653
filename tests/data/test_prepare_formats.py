"""Every JSON source format `lawtune prepare` reads, detected from content, plus the JSON error paths."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from lawtune.data.conversations import read_examples
from lawtune.data.json_source import _ArrayStream
from lawtune.data.prepare import run
from lawtune.errors import LawtuneError

RATIOS = {"dev_ratio": 0.3, "test_ratio": 0.3}
QA = [(f"第{i}个法律问题：借款合同没有约定利息怎么办？", f"第{i}个回答：没有约定利息的，视为没有利息。") for i in range(6)]
LAW = "《民法典》第六百八十条：禁止高利放贷，借款的利率不得违反国家有关规定。"


def write_json(path: Path, records: list, jsonl: bool = False) -> Path:
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in records) if jsonl else json.dumps(records, ensure_ascii=False, indent=1)
    path.write_text(text, encoding="utf-8")
    return path


def outputs(out: Path) -> list[dict]:
    return [json.loads(line) for split in ("train", "dev", "test") for line in (out / f"{split}.jsonl").open(encoding="utf-8")]


def prepare(tmp_path: Path, source: Path, **options) -> tuple[dict, list[dict]]:
    report = run([source], tmp_path / "out", **{**RATIOS, **options})
    assert report["rows_read"] == report["kept"] + report["dropped_total"]
    assert sum(report["splits"].values()) == report["kept"]
    return report, sorted(outputs(tmp_path / "out"), key=lambda row: row["meta"]["line"])


def test_alpaca_wrapped_in_one_element_lists_like_lawyer_llama(tmp_path):
    records = [[{"input": "", "instruction": q, "output": a}] for q, a in QA]
    report, rows = prepare(tmp_path, write_json(tmp_path / "legal_advice.json", records))
    assert report["sources"][0]["format"] == "alpaca" and report["kept"] == 6
    assert rows[0]["conversations"] == [{"role": "user", "content": QA[0][0]}, {"role": "assistant", "content": QA[0][1]}]


def test_alpaca_jsonl_with_input_history_and_a_broken_line(tmp_path):
    records = [{"instruction": q, "input": "补充：对方是朋友。", "output": a, "history": [[f"你好，想咨询第{i}个借款问题", "请讲，我在听。"]]} for i, (q, a) in enumerate(QA)]
    source = write_json(tmp_path / "alpaca.jsonl", records, jsonl=True)
    source.write_text(source.read_text(encoding="utf-8") + '\n{"instruction": "断了的行\n', encoding="utf-8")
    report, rows = prepare(tmp_path, source)
    assert report["dropped"] == {"bad_json": 1} and report["dropped_lines"]["bad_json"] == [f"{source}:7"]
    assert [t["role"] for t in rows[0]["conversations"]] == ["user", "assistant", "user", "assistant"]
    assert rows[0]["conversations"][2]["content"] == QA[0][0] + "\n补充：对方是朋友。"


def test_a_deeply_nested_jsonl_line_is_a_counted_bad_json_drop(tmp_path):
    """200k `[` on one line (issue 25 item 10) used to abort prepare with RecursionError."""
    records = [{"instruction": q, "input": "", "output": a} for q, a in QA]
    source = write_json(tmp_path / "nested.jsonl", records, jsonl=True)
    source.write_text(source.read_text(encoding="utf-8") + "\n" + "[" * 200_000 + "\n", encoding="utf-8")
    report, rows = prepare(tmp_path, source)
    assert report["dropped"] == {"bad_json": 1} and report["dropped_lines"]["bad_json"] == [f"{source}:7"]
    assert report["kept"] == len(QA)


def test_alpaca_without_instruction_uses_input(tmp_path):
    records = [{"input": q, "output": a, "type": "gainian"} for q, a in QA]  # fakao_gpt4.json's shape
    _report, rows = prepare(tmp_path, write_json(tmp_path / "fakao.json", records))
    assert rows[0]["conversations"][0]["content"] == QA[0][0]


def test_query_response_keeps_laws_as_metadata(tmp_path):
    records = [{"query": q, "laws": [LAW], "response": a} for q, a in QA]
    report, rows = prepare(tmp_path, write_json(tmp_path / "zixun.json", records))
    assert report["sources"][0]["format"] == "query_response"
    assert rows[0]["meta"] == {"source": "zixun.json", "line": 2, "laws": [LAW]}
    assert rows[0]["conversations"][-1]["content"] == QA[0][1]


def test_query_response_multi_turn_tagged_history(tmp_path):
    records = [
        {"query": q, "laws": [LAW], "history": [f"[客户] {q}", f"[律师] {a}", "[客户] 那利息呢？", "[客户] 能要吗？", "[律师] 不能再要利息。", "[客户] 谢谢"]}
        for q, a in QA
    ]
    _report, rows = prepare(tmp_path, write_json(tmp_path / "multi.json", records))
    turns = rows[0]["conversations"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]  # unanswered last turn dropped
    assert turns[2]["content"] == "那利息呢？\n能要吗？"  # repeated speaker merged


def test_sharegpt_with_system_and_a_bad_role(tmp_path):
    records = [{"system": "你是律师", "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]} for q, a in QA]
    records.append({"conversations": [{"from": "human", "value": "问题问题"}, {"from": "function_call", "value": "{}"}]})
    report, rows = prepare(tmp_path, write_json(tmp_path / "sharegpt.json", records), system_prompt="不会覆盖已有的系统提示")
    assert report["sources"][0]["format"] == "sharegpt" and report["dropped"] == {"bad_record": 1}
    assert rows[0]["conversations"][0] == {"role": "system", "content": "你是律师"}


def test_conversations_jsonl_passes_through_and_bad_records_are_counted(tmp_path):
    records = [{"conversations": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "meta": {"id": i}} for i, (q, a) in enumerate(QA)]
    records.append({"conversations": [{"role": "assistant", "content": "先答后问"}, {"role": "user", "content": "问题"}]})
    report, rows = prepare(tmp_path, write_json(tmp_path / "conv.jsonl", records, jsonl=True))
    assert report["sources"][0]["format"] == "conversations" and report["dropped"] == {"bad_record": 1}
    assert rows[0]["conversations"] == records[0]["conversations"] and rows[0]["meta"]["id"] == 0


def test_mixed_sources_in_one_run(tmp_path):
    alpaca = write_json(tmp_path / "a.json", [{"instruction": q, "input": "", "output": a} for q, a in QA[:3]])
    csv = tmp_path / "b.csv"
    csv.write_text("title,question,reply,is_best\n" + "".join(f"{q},,{a},1\n" for q, a in QA), encoding="utf-8")
    report = run([alpaca, csv], tmp_path / "out", **RATIOS)
    assert [s["format"] for s in report["sources"]] == ["alpaca", "csv"]
    assert report["dropped"] == {"duplicate": 3}  # the CSV repeats the alpaca rows


def test_format_flag_overrides_detection(tmp_path):
    source = write_json(tmp_path / "a.json", [{"instruction": q, "input": "", "output": a} for q, a in QA])
    with pytest.raises(LawtuneError, match="missing column"):
        run([source], tmp_path / "out", format="csv")
    csv = tmp_path / "b.csv"
    csv.write_text("title,reply\n问题,回答\n", encoding="utf-8")
    with pytest.raises(LawtuneError, match="not JSON or JSONL"):
        run([csv], tmp_path / "out", format="alpaca")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"instruction": "问", "output": "答"},\n {"instruction": "问2", "output": ', r"x\.json:2: invalid JSON array"),
        ('[{"instruction": "问", "output": "答"} {"a": 1}]', r"x\.json:1: invalid JSON array \(expected ','"),
        ('{"data": [\n{"instruction": "问"}]}', r"x\.json:1: the first line is not a complete JSON object"),
        ('[{"foo": 1}]', r"cannot tell the format .*'foo'"),
        ("", "empty file"),
        ("[]", "no records found"),
    ],
)
def test_broken_json_is_one_error_naming_file_and_line(tmp_path, text, message):
    source = tmp_path / "x.json"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(LawtuneError, match=message):
        run([source], tmp_path / "out")
    assert not list((tmp_path / "out").glob(".prepare-*")) if (tmp_path / "out").exists() else True


def test_array_stream_refills_a_tiny_buffer():
    records = [{"n": i, "text": "内容" * i, "nested": [1, {"x": "]"}]} for i in range(50)]
    text = "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"
    elements = list(_ArrayStream(Path("x.json"), io.StringIO(text), chunk=7).elements())
    assert [value for _line, value in elements] == records
    assert [line for line, _value in elements] == list(range(2, 52))


def test_read_examples_validates_and_names_the_line(tmp_path):
    good = {"conversations": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}], "meta": {"laws": [LAW]}}
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n", encoding="utf-8")
    examples = list(read_examples(path))
    assert [e.messages for e in examples] == [good["conversations"]] * 2 and [e.line for e in examples] == [1, 3]
    assert examples[0].meta == {"laws": [LAW]} and examples[0].record() == good
    assert examples[0].prompt == good["conversations"][:1] and (examples[0].question, examples[0].reference) == ("问", "答")
    path.write_text(json.dumps(good) + '\n{"conversations": [{"role": "user", "content": "只有问题"}]}\n', encoding="utf-8")
    with pytest.raises(LawtuneError, match=r"c\.jsonl:2: the last turn must be the assistant's answer"):
        list(read_examples(path))
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(LawtuneError, match=r"c\.jsonl:1: not valid JSON"):
        list(read_examples(path))
    with pytest.raises(LawtuneError, match="no such file"):
        list(read_examples(tmp_path / "missing.jsonl"))
