"""Tool use in the chat templates: definitions, calls and results render per docs/tools.md, and the loss
mask covers exactly the assistant turns (call blocks included) and none of the tool results."""

from __future__ import annotations

import pytest

from lawtune.errors import LawtuneError
from lawtune.modeling.chat import DROP_CALL_TOO_LONG, IGNORE_INDEX, ChatFormat, load_template
from lawtune.modeling.loading import load_tokenizer
from lawtune.tools import builtin_tools
from lawtune.modeling.tool_format import parse_tool_calls, render_tool_calls

QUESTION = "工作3年5个月，月薪8000，协商解除，补偿多少？"
ARGUMENTS = {"monthly_wage": 8000, "years": 3, "months": 5}
RESULT = '{"result":28000,"formula":"3.5个月 × 8000元 = 28000元","articles":["《劳动合同法》第四十七条"]}'
FINAL = "经济补偿为28000元（《劳动合同法》第四十七条）。"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def chat(tokenizer):
    return ChatFormat(tokenizer, load_template("gemma"))


@pytest.fixture(scope="module")
def tools():
    return [tool.openai() for tool in builtin_tools()]


def call(name="severance_pay", arguments=ARGUMENTS, call_id="call_0"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_conversation(arguments='{"monthly_wage": 8000, "years": 3, "months": 5}'):
    return [{"role": "system", "content": "你是法律助手。"},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": None, "tool_calls": [call(arguments=arguments)]},
            {"role": "tool", "tool_call_id": "call_0", "content": RESULT},
            {"role": "assistant", "content": FINAL}]


def supervised_text(chat, example):
    return chat.tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])


def test_loss_mask_covers_the_call_and_the_answer_and_no_tool_result(chat, tools):
    example = chat.encode_example(tool_conversation(), 16384, 512, tools=tools)
    call_text = render_tool_calls([call()])
    assert supervised_text(chat, example) == call_text + "<end_of_turn>" + FINAL + "<end_of_turn>"
    # every context token is masked, and the tool result and definitions are context
    context = chat.tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label == IGNORE_INDEX])
    assert "<tool_response>" in context and "28000" in context and "<tools>" in context
    assert "<tool_response>" not in supervised_text(chat, example)


def test_the_call_prompt_is_exactly_what_inference_feeds_the_model(chat, tools):
    messages = tool_conversation()
    example = chat.encode_example(messages[:3], 16384, 512, tools=tools)
    prompt = chat.encode_prompt(messages[:2], tools=tools)
    assert example.input_ids[: len(prompt)] == prompt
    assert all(label == IGNORE_INDEX for label in example.labels[: len(prompt)])
    # and the supervised call parses back to the call
    turn = parse_tool_calls(supervised_text(chat, example).removesuffix("<end_of_turn>"))
    assert turn.errors == [] and [(c.name, c.arguments) for c in turn.calls] == [("severance_pay", ARGUMENTS)]


def test_the_template_renders_the_documented_format(chat, tools):
    text = chat.render(tool_conversation(), tools=tools[:1])
    assert text.startswith("<bos><start_of_turn>user\n你是法律助手。\n\n# 工具\n\n你可以调用以下工具（参数名后有 ? 的可不填）："
                           "\n<tools>\n- severance_pay(monthly_wage: number|string, years?: integer|string, "
                           "months?: integer|string, start_date?: date（入职日）, end_date?: date（最后工作日）, "
                           "local_average_wage?: number|string, local_minimum_wage?: number|string, "
                           "unlawful?: boolean（违法解除、违法辞退时 true）)：解除或终止")

    assert ('</tools>\n\n需要调用工具时，只输出：<tool_call>{"name": 工具名, "arguments": {参数}}</tool_call>\n\n'
            + QUESTION + "<end_of_turn>\n") in text
    assert ("<start_of_turn>model\n<tool_call>\n"
            '{"name": "severance_pay", "arguments": {"monthly_wage": 8000, "years": 3, "months": 5}}\n'
            "</tool_call><end_of_turn>\n<start_of_turn>user\n<tool_response>\n"
            '{"name": "severance_pay", "content": {"result": 28000, "formula": "3.5个月 × 8000元 = 28000元", '
            '"articles": ["《劳动合同法》第四十七条"]}}\n</tool_response><end_of_turn>\n'
            f"<start_of_turn>model\n{FINAL}<end_of_turn>\n") in text


def test_compact_definitions_cover_types_formats_arrays_and_bare_functions(chat):
    tools = [{"name": "f", "description": "d", "parameters": {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string"}, "b": {"type": "array", "items": {"type": "string", "format": "date"}},
        "c": {"description": "no type"}, "d": {"type": "boolean", "x-label": "违法时 true"}}}},
             {"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {}}}}]
    text = chat.render([{"role": "user", "content": "q"}], tools=tools)
    assert "<tools>\n- f(a: string, b?: date[], c?: any, d?: boolean（违法时 true）)：d\n- g()\n</tools>" in text

def test_arguments_as_text_or_dict_render_the_same(chat, tools):
    spelled = [chat.render(tool_conversation(arguments), tools=tools) for arguments in
               ('{"monthly_wage":8000,"years":3,"months":5}', ARGUMENTS, '{"monthly_wage": 8000, "years": 3, "months": 5}')]
    assert spelled[0] == spelled[1] == spelled[2]


def test_content_before_calls_and_parallel_results_in_one_turn(chat, tools):
    messages = [{"role": "user", "content": QUESTION},
                {"role": "assistant", "content": "我来计算。", "tool_calls": [
                    call(), call("annual_leave_days", {"cumulative_work_years": 12}, "call_1")]},
                {"role": "tool", "tool_call_id": "call_0", "content": '{"result":28000}'},
                {"role": "tool", "tool_call_id": "call_1", "name": "annual_leave_days", "content": '{"result":10}'},
                {"role": "assistant", "content": FINAL}]
    text = chat.render(messages, tools=tools)
    assert "<start_of_turn>model\n我来计算。\n<tool_call>\n" in text
    assert ('</tool_response>\n<tool_response>\n{"name": "annual_leave_days", "content": {"result": 10}}\n'
            "</tool_response><end_of_turn>\n") in text
    assert text.count("<start_of_turn>user\n") == 2
    example = chat.encode_example(messages, 16384, 512, tools=tools)
    assert supervised_text(chat, example).startswith("我来计算。\n<tool_call>")
    assert "<tool_response>" not in supervised_text(chat, example)


def test_a_plain_text_result_becomes_a_json_string(chat):
    messages = tool_conversation()
    messages[3] = {"role": "tool", "tool_call_id": "call_0", "content": "超时"}
    assert '{"name": "severance_pay", "content": "超时"}' in chat.render(messages)


def test_a_tool_message_without_a_name_or_known_call_is_a_clear_error(chat):
    messages = tool_conversation()
    messages[3] = {"role": "tool", "tool_call_id": "call_9", "content": "{}"}
    with pytest.raises(LawtuneError, match="a tool message needs a `name`"):
        chat.render(messages)


def test_a_call_longer_than_the_output_budget_is_dropped_never_cut(chat, tools):
    encoding = chat.encode_checked(tool_conversation()[:3], 16384, 10, tools=tools)
    assert encoding.example is None and encoding.note == DROP_CALL_TOO_LONG


def test_without_tools_nothing_changes(chat):
    messages = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": FINAL}]
    assert chat.render(messages) == f"<bos><start_of_turn>user\n{QUESTION}<end_of_turn>\n<start_of_turn>model\n{FINAL}<end_of_turn>\n"


def test_chatglm3_renders_tools_in_its_own_format(tokenizer):
    glm = ChatFormat(tokenizer, load_template("chatglm3"))
    eos = tokenizer.eos_token
    definition = {"type": "function", "function": {"name": "severance_pay", "description": "经济补偿",
                                                   "parameters": {"type": "object", "properties": {}}}}
    messages = tool_conversation()
    messages[2]["tool_calls"] = [call(arguments={"monthly_wage": 8000, "unlawful": True, "law": "劳动合同法"})]
    text = glm.render(messages, tools=[definition])
    assert text.startswith("[gMASK]sop<|system|>\nAnswer the following questions as best as you can. You have access "
                           'to the following tools:\n[\n    {\n        "name": "severance_pay",')
    assert (f"<|user|>\n{QUESTION}<|assistant|>severance_pay\n```python\n"
            f'tool_call(monthly_wage=8000, unlawful=True, law="劳动合同法")\n```{eos}'
            '<|observation|>\n{"result": 28000, "formula": "3.5个月 × 8000元 = 28000元", '
            f'"articles": ["《劳动合同法》第四十七条"]}}<|assistant|>\n{FINAL}{eos}') in text
    # the loss covers the call (after the bare <|assistant|> header) and the answer, not the observation
    pieces = glm.segments(messages, tools=[definition])
    supervised = [text for text, is_supervised in pieces if is_supervised]
    assert supervised[0].startswith("severance_pay\n```python\ntool_call(") and supervised[1] == f"\n{FINAL}{eos}"
    assert all("<|observation|>" not in piece for piece in supervised)
    # without tools the answer header is unchanged
    assert glm.render([{"role": "user", "content": "q"}], add_generation_prompt=True).endswith("<|assistant|>\n")
