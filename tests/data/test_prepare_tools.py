"""`lawtune prepare` reads tool-use conversations (ChatGLM3 finetune_demo, OpenAI, sharegpt) and writes
OpenAI messages with a top-level `tools` list; `read_examples` and training read them back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lawtune.data.conversations import check_messages, read_examples
from lawtune.data.prepare import run
from lawtune.errors import LawtuneError

QUESTIONS = [f"第{i}个问题：我工作了{i + 1}年，月薪8000元，公司协商解除，经济补偿是多少？" for i in range(6)]
SEVERANCE = {"name": "severance_pay", "description": "计算经济补偿",
             "parameters": {"type": "object", "properties": {"monthly_wage": {"type": "number"}}}}
OBSERVATION = {"result": 8000, "articles": ["《劳动合同法》第四十七条"]}
FINAL = "根据《劳动合同法》第四十七条，经济补偿为8000元。"


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    return path


def prepare(tmp_path: Path, source: Path) -> tuple[dict, list[dict]]:
    out = tmp_path / "out"
    report = run([source], out, dev_ratio=0.3, test_ratio=0.3)
    rows = [json.loads(line) for split in ("train", "dev", "test") for line in (out / f"{split}.jsonl").open(encoding="utf-8")]
    return report, sorted(rows, key=lambda row: row["meta"]["line"])


def expected_call(years: int, call_id: str = "call_0", content: str = "") -> list[dict]:
    arguments = json.dumps({"monthly_wage": 8000, "years": years}, ensure_ascii=False)
    return [{"role": "assistant", "content": content, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "severance_pay", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "name": "severance_pay",
             "content": json.dumps(OBSERVATION, ensure_ascii=False)}]


def test_chatglm3_finetune_demo_tool_format(tmp_path):
    records = [{"tools": [SEVERANCE], "conversations": [
        {"role": "system", "content": "你是法律助手。"},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "我来计算一下。"},
        {"role": "tool", "name": "severance_pay", "parameters": {"monthly_wage": 8000, "years": i + 1},
         "observation": OBSERVATION},
        {"role": "assistant", "content": FINAL}]} for i, question in enumerate(QUESTIONS)]
    report, rows = prepare(tmp_path, write_jsonl(tmp_path / "glm.jsonl", records))
    assert report["kept"] == 6 and report["sources"][0]["format"] == "conversations"
    row = rows[2]
    assert row["tools"] == [{"type": "function", "function": SEVERANCE}]
    assert row["conversations"] == [{"role": "system", "content": "你是法律助手。"},
                                    {"role": "user", "content": QUESTIONS[2]},
                                    *expected_call(3, content="我来计算一下。"),
                                    {"role": "assistant", "content": FINAL}]


def test_openai_messages_with_tool_calls(tmp_path):
    records = [{"tools": [{"type": "function", "function": SEVERANCE}], "messages": [
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "abc", "type": "function",
             "function": {"name": "severance_pay", "arguments": {"monthly_wage": 8000, "years": i + 1}}}]},
        {"role": "tool", "tool_call_id": "abc", "content": json.dumps(OBSERVATION, ensure_ascii=False)},
        {"role": "assistant", "content": FINAL}]} for i, question in enumerate(QUESTIONS)]
    report, rows = prepare(tmp_path, write_jsonl(tmp_path / "openai.jsonl", records))
    assert report["kept"] == 6
    assert rows[0]["conversations"][1:] == [*expected_call(1), {"role": "assistant", "content": FINAL}]
    assert rows[0]["tools"] == [{"type": "function", "function": SEVERANCE}]


def test_sharegpt_function_call_and_observation(tmp_path):
    records = [{"tools": json.dumps([SEVERANCE], ensure_ascii=False), "conversations": [
        {"from": "human", "value": question},
        {"from": "function_call", "value": json.dumps({"name": "severance_pay",
                                                       "arguments": {"monthly_wage": 8000, "years": i + 1}})},
        {"from": "observation", "value": json.dumps(OBSERVATION, ensure_ascii=False)},
        {"from": "gpt", "value": FINAL}]} for i, question in enumerate(QUESTIONS)]
    report, rows = prepare(tmp_path, write_jsonl(tmp_path / "sharegpt.jsonl", records))
    assert report["kept"] == 6 and report["sources"][0]["format"] == "sharegpt"
    assert rows[5]["conversations"][1:] == [*expected_call(6), {"role": "assistant", "content": FINAL}]
    assert rows[5]["tools"] == [{"type": "function", "function": SEVERANCE}]


@pytest.mark.parametrize("turns", [
    [{"from": "human", "value": "问题？"}, {"from": "function_call", "value": "{not json"},
     {"from": "observation", "value": "{}"}, {"from": "gpt", "value": "答。"}],
    [{"from": "human", "value": "问题？"}, {"from": "observation", "value": "{}"}, {"from": "gpt", "value": "答。"}],
    [{"from": "human", "value": "问题？"}, {"from": "function_call", "value": '{"name": "x", "arguments": {}}'},
     {"from": "gpt", "value": "答。"}],
])
def test_broken_sharegpt_tool_turns_are_counted_drops(tmp_path, turns):
    records = [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": FINAL}]} for q in QUESTIONS]
    records.append({"conversations": turns})
    report, rows = prepare(tmp_path, write_jsonl(tmp_path / "sharegpt.jsonl", records))
    assert report["kept"] == 6 and report["dropped"] == {"bad_record": 1}


def test_a_result_without_a_call_or_a_call_without_a_result_is_dropped(tmp_path):
    good = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": FINAL}]} for q in QUESTIONS]
    orphan = {"messages": [{"role": "user", "content": "问题？"}, {"role": "tool", "tool_call_id": "x", "content": "{}"},
                           {"role": "assistant", "content": FINAL}]}
    unanswered = {"messages": [{"role": "user", "content": "问题？"}, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "a", "function": {"name": "severance_pay", "arguments": "{}"}}]}, {"role": "assistant", "content": FINAL}]}
    report, _ = prepare(tmp_path, write_jsonl(tmp_path / "c.jsonl", [*good, orphan, unanswered]))
    assert report["kept"] == 6 and report["dropped"] == {"bad_record": 2}


def test_prepared_tool_records_read_back_and_train_with_their_tools(tmp_path, tiny_model_dir):
    from lawtune.modeling.chat import ChatFormat, load_template
    from lawtune.modeling.loading import load_tokenizer
    from lawtune.training.data import encode_rows

    records = [{"tools": [SEVERANCE], "conversations": [
        {"role": "user", "content": question},
        {"role": "tool", "name": "severance_pay", "parameters": {"monthly_wage": 8000, "years": i + 1},
         "observation": OBSERVATION},
        {"role": "assistant", "content": FINAL}]} for i, question in enumerate(QUESTIONS)]
    prepare(tmp_path, write_jsonl(tmp_path / "glm.jsonl", records))
    examples = [e for split in ("train", "dev", "test") for e in read_examples(tmp_path / "out" / f"{split}.jsonl")]
    assert len(examples) == 6 and all(e.tools == [{"type": "function", "function": SEVERANCE}] for e in examples)
    assert examples[0].messages[1]["tool_calls"][0]["function"]["name"] == "severance_pay"
    assert examples[0].reference == FINAL

    chat = ChatFormat(load_tokenizer(tiny_model_dir), load_template("gemma"))
    encoded = encode_rows([e.messages for e in examples], chat, 4096, 256, tools=[e.tools for e in examples])
    assert len(encoded.examples) == 6 and not encoded.dropped
    first = encoded.examples[0]
    prompt = chat.tokenizer.decode(first["input_ids"])
    assert "<tools>" in prompt and '"name": "severance_pay"' in prompt and "<tool_response>" in prompt
    supervised = chat.tokenizer.decode([t for t, label in zip(first["input_ids"], first["labels"]) if label != -100])
    assert supervised.startswith("<tool_call>") and "<tool_response>" not in supervised


def test_check_messages_tool_order():
    call = {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}
    result = {"role": "tool", "tool_call_id": "c", "name": "f", "content": "{}"}
    user, answer = {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}
    assert check_messages([user, call, result, answer]) is None
    assert check_messages([user, call, result, call, result, answer]) is None  # two rounds
    assert "where a 'tool' result was expected" in check_messages([user, call, answer])
    assert "no assistant tool call before it" in check_messages([user, result, answer])
    assert "needs the 'name'" in check_messages([user, call, {**result, "name": ""}, answer])
    assert "non-empty list" in check_messages([user, {**call, "tool_calls": []}, answer])


def test_read_examples_names_bad_tools(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"tools": [{"name": 3}], "conversations": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n", encoding="utf-8")
    with pytest.raises(LawtuneError, match=r"bad.jsonl:1: 'tools' must be a list of OpenAI tool definitions"):
        list(read_examples(path))
