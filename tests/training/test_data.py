"""Reading conversation files, dropping unusable samples (counted), and the collator."""

from __future__ import annotations

import json

import pytest

from lawtune.errors import LawtuneError
from lawtune.modeling.chat import IGNORE_INDEX, ChatFormat, load_template
from lawtune.modeling.loading import load_tokenizer
from lawtune.data.conversations import read_examples
from lawtune.training.data import Collator, encode_rows, safe_pad_id


@pytest.fixture(scope="module")
def chat(tiny_model_dir):
    return ChatFormat(load_tokenizer(tiny_model_dir), load_template("gemma"))


def test_formats_are_read_and_empty_answers_dropped_and_counted(tmp_path, chat):
    path = tmp_path / "d.jsonl"
    rows = [
        {"conversations": [{"role": "user", "content": "离婚怎么办"}, {"role": "assistant", "content": "可以协议离婚。"}]},
        {"instruction": "工资被拖欠", "input": "", "output": "申请劳动仲裁。"},
        {"conversations": [{"role": "user", "content": "问题"}, {"role": "assistant", "content": ""}]},
        {"conversations": [{"role": "user", "content": "只有问题"}]},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    conversations = [e.messages for e in read_examples(path, strict=False)]  # what train reads
    assert len(conversations) == 4
    encoded = encode_rows(conversations, chat, 64, 64)
    assert len(encoded.examples) == 2
    assert encoded.dropped == {"no supervised token (empty answer)": 1, "no assistant turn": 1}
    supervised = [t for t, l in zip(encoded.examples[1]["input_ids"], encoded.examples[1]["labels"]) if l != IGNORE_INDEX]
    assert chat.tokenizer.decode(supervised) == "申请劳动仲裁。<end_of_turn>"


def test_bad_lines_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"conversations": []}\n', encoding="utf-8")
    with pytest.raises(LawtuneError, match=r"bad.jsonl:1: 'conversations' must be a non-empty list of turns"):
        list(read_examples(path, strict=False))
    path.write_text('{"instruction": "a", "output": "b"}\n{oops\n', encoding="utf-8")
    with pytest.raises(LawtuneError, match=r"bad.jsonl:2: not valid JSON"):
        list(read_examples(path, strict=False))
    with pytest.raises(LawtuneError, match="missing.jsonl: no such file; .*`lawtune prepare"):
        list(read_examples(tmp_path / "missing.jsonl", strict=False))


def test_collator_pads_right_with_ignored_labels():
    batch = Collator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_every_kept_example_ends_with_the_stop_and_long_answers_are_counted(chat):
    long_answer = "可以协商。" + "劳动仲裁" * 40  # the only sentence end is early: cut there
    no_end = "劳动仲裁" * 40  # no sentence end at all: dropped
    rows = [[{"role": "user", "content": "问题"}, {"role": "assistant", "content": text}]
            for text in ("可以协议离婚。", long_answer, no_end)]
    encoded = encode_rows(rows, chat, 64, 24)
    assert len(encoded.examples) == 2
    assert encoded.changed == {"answer cut at a sentence end to fit max_output_length": 1}
    assert encoded.dropped == {"answer longer than max_output_length with no sentence end inside it": 1}
    end = chat.end_of_turn_ids
    for example in encoded.examples:
        supervised = [t for t, l in zip(example["input_ids"], example["labels"]) if l != IGNORE_INDEX]
        assert supervised[-len(end):] == end
        assert len(supervised) <= 24


def test_pad_is_never_a_stop_token(chat):
    tokenizer = chat.tokenizer
    assert safe_pad_id(tokenizer, chat.stop_token_ids) == tokenizer.pad_token_id  # <pad> is not a stop token
    assert safe_pad_id(tokenizer, [tokenizer.pad_token_id]) == tokenizer.unk_token_id  # pad = stop: use <unk>
    with pytest.raises(LawtuneError, match="pad token .* is a stop token"):
        safe_pad_id(tokenizer, [tokenizer.pad_token_id, tokenizer.unk_token_id])
