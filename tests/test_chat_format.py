"""Chat formatting and label masking on the tiny model's tokenizer with the shipped Gemma template."""

from __future__ import annotations

import pytest

from lawtune.errors import LawtuneError
from lawtune.modeling.chat import CUT_AT_SENTENCE, DROP_TOO_LONG, IGNORE_INDEX, ChatFormat, load_template
from lawtune.modeling.loading import load_tokenizer

QUESTION = "公司拖欠工资怎么办？"
ANSWER = "可以先与公司协商，协商不成可以向劳动监察大队投诉或申请劳动仲裁。"


@pytest.fixture(scope="module")
def chat(tiny_model_dir):
    return ChatFormat(load_tokenizer(tiny_model_dir), load_template("gemma"))


def conversation(question=QUESTION, answer=ANSWER, system=None):
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_end_of_turn_is_derived_from_the_template(chat):
    assert chat.end_of_turn_text == "<end_of_turn>"
    assert chat.end_of_turn_ids == [chat.tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    assert chat.tokenizer.eos_token_id in chat.stop_token_ids


def test_supervised_tokens_decode_to_exactly_the_answer_plus_end_token(chat):
    example = chat.encode_example(conversation(system="你是法律助手。"), 512, 512)
    supervised = [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    assert chat.tokenizer.decode(supervised) == ANSWER + "<end_of_turn>"
    # the prompt part is exactly what inference feeds the model
    prompt = chat.encode_prompt(conversation(system="你是法律助手。")[:-1])
    assert example.input_ids[: len(prompt)] == prompt
    assert all(label == IGNORE_INDEX for label in example.labels[: len(prompt)])


def test_long_answer_is_cut_at_a_sentence_end_and_keeps_the_end_token(chat):
    answer = "先与公司协商。协商不成可以投诉！还可以申请劳动仲裁。"
    first = len(chat.tokenizer("先与公司协商。", add_special_tokens=False)["input_ids"])
    encoding = chat.encode_checked(conversation(answer=answer), 512, first + 3)  # room for sentence 1 only
    supervised = [t for t, label in zip(encoding.example.input_ids, encoding.example.labels) if label != IGNORE_INDEX]
    assert chat.tokenizer.decode(supervised) == "先与公司协商。<end_of_turn>"
    assert encoding.note == CUT_AT_SENTENCE
    assert chat.encode_checked(conversation(answer=answer), 512, 512).note is None  # fits: untouched


def test_long_answer_without_a_sentence_end_in_budget_is_dropped_not_truncated(chat):
    encoding = chat.encode_checked(conversation(), 512, 6)  # ANSWER's only sentence end is its last character
    assert encoding.example is None and encoding.note == DROP_TOO_LONG


def test_prompt_starts_with_exactly_one_bos(chat):
    example = chat.encode_example(conversation(system="你是法律助手。"), 512, 512)
    bos = chat.tokenizer.bos_token_id
    assert example.input_ids[0] == bos and example.input_ids.count(bos) == 1


def test_input_budget_cuts_the_prompt_from_the_left_and_keeps_bos(chat):
    long_question = "我想咨询一下" * 50 + QUESTION
    example = chat.encode_example(conversation(question=long_question), 20, 512)
    prompt_len = sum(1 for label in example.labels if label == IGNORE_INDEX)
    assert prompt_len == 20
    assert example.input_ids[0] == chat.tokenizer.bos_token_id
    assert chat.tokenizer.decode(example.input_ids[:prompt_len]).endswith("<start_of_turn>model\n")


def test_sample_without_supervised_tokens_is_dropped(chat):
    assert chat.encode_example(conversation(answer=""), 512, 512) is None
    assert chat.encode_example(conversation(), 512, 1) is None  # budget leaves room for the end token only


def test_multi_turn_supervises_every_answer(chat):
    messages = conversation() + [{"role": "user", "content": "仲裁要多久？"}, {"role": "assistant", "content": "一般四十五日内结束。"}]
    example = chat.encode_example(messages, 512, 512)
    supervised = chat.tokenizer.decode([t for t, l in zip(example.input_ids, example.labels) if l != IGNORE_INDEX])
    assert supervised == ANSWER + "<end_of_turn>" + "一般四十五日内结束。<end_of_turn>"


def test_chatglm3_template_ends_answers_with_eos(chat):
    glm = ChatFormat(chat.tokenizer, load_template("chatglm3"))
    assert glm.end_of_turn_text == chat.tokenizer.eos_token
    text = glm.render(conversation(), add_generation_prompt=False)
    assert text.startswith("[gMASK]sop<|user|>\n")


def test_unknown_template_is_a_clear_error():
    with pytest.raises(LawtuneError, match="chat template 'nope' not found"):
        load_template("nope")
