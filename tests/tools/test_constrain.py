"""The lazy call grammar of tool_choice auto (lawtune.tools.constrain), on the tiny model's real tokenizer."""

from __future__ import annotations

import json
import re

import pytest
import torch

from lawtune.modeling.decoding import DecodingPolicy
from lawtune.modeling.loading import load_tokenizer
from lawtune.tools import builtin_tools
from lawtune.tools.constrain import ToolCallLogitsProcessor, block_grammar, call_schema
from lawtune.tools.figures import Hours
from tool_schemas import fits, ways
from lawtune.modeling.tool_format import parse_tool_calls

PROMPT = [5, 6, 7]  # any prompt ids: the processor reads only what follows them


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def offered():
    return [tool.openai() for tool in builtin_tools() if tool.name in ("severance_pay", "overtime_pay")]


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def step(processor, generated, scores):
    return processor(torch.tensor([PROMPT + generated]), scores.clone().unsqueeze(0))[0]


def allowed_texts(tokenizer, logits):
    return {tokenizer.decode([token]) for token in torch.nonzero(logits > float("-inf")).flatten().tolist()}


def test_inside_a_block_only_an_offered_name_can_follow(tokenizer, offered):
    processor = ToolCallLogitsProcessor(tokenizer, [offered], len(PROMPT), [tokenizer.eos_token_id], DecodingPolicy())
    vocab = len(tokenizer)
    generated = ids(tokenizer, '好的。<tool_call>\n{"name": "')
    logits = step(processor, generated, torch.zeros(vocab))
    texts = allowed_texts(tokenizer, logits)
    names = ['severance_pay", "arguments": {', 'overtime_pay", "arguments": {']
    assert texts and all(any(name.startswith(text) for name in names) for text in texts), texts
    assert not any(text.startswith("severance-") for text in texts)


def test_greedy_decoding_under_the_grammar_writes_a_call_that_parses(tokenizer, offered):
    """A 'model' that prefers closing JSON and the digits of 8000 still only writes a schema-valid call."""
    processor = ToolCallLogitsProcessor(tokenizer, [offered], len(PROMPT), [tokenizer.eos_token_id], DecodingPolicy())
    vocab = len(tokenizer)
    preference = torch.zeros(vocab)
    for rank, text in enumerate(["}}", "}", "8", "\n", "</", "tool", "_", "call", ">", "over"]):
        for token in ids(tokenizer, text)[:1]:
            preference[token] = 100.0 - rank
    generated = ids(tokenizer, "<tool_call>")
    for _ in range(80):
        logits = step(processor, generated, preference)
        generated.append(int(torch.argmax(logits)))
        if not processor.in_block(0):
            break
    text = tokenizer.decode(generated)
    turn = parse_tool_calls(text)
    assert turn.errors == [] and len(turn.calls) == 1, text
    assert turn.calls[0].name in ("severance_pay", "overtime_pay")
    schema = next(t["function"]["parameters"] for t in offered if t["function"]["name"] == turn.calls[0].name)
    assert set(turn.calls[0].arguments) <= set(schema["properties"]) and "monthly_wage" in turn.calls[0].arguments


def test_no_penalty_inside_a_block_and_the_answer_penalty_outside(tokenizer, offered):
    policy = DecodingPolicy(repetition_penalty=2.0)
    vocab = len(tokenizer)
    scores = torch.full((vocab,), 4.0)
    inside = ids(tokenizer, '<tool_call>\n{"name": "severance_pay", "arguments": {"monthly_wage": "')
    processor = ToolCallLogitsProcessor(tokenizer, [offered], len(PROMPT), [tokenizer.eos_token_id], policy)
    logits = step(processor, inside, scores)
    finite = logits[logits > float("-inf")]
    assert processor.in_block(0) and len(finite) and bool((finite == 4.0).all())  # masked, never divided by 2
    # a row offering no tools (and text before any block) is penalized as an answer
    free = ids(tokenizer, "答案答案")
    for row_tools in (None, offered):
        processor = ToolCallLogitsProcessor(tokenizer, [row_tools], len(PROMPT), [tokenizer.eos_token_id], policy)
        logits = step(processor, free, scores)
        assert logits[free[0]] == 2.0 and bool((logits > float("-inf")).all())
        assert int((logits == 4.0).sum()) == vocab - len(set(free))


def test_after_the_block_closes_the_turn_is_free_again(tokenizer, offered):
    processor = ToolCallLogitsProcessor(tokenizer, [offered], len(PROMPT), [tokenizer.eos_token_id], DecodingPolicy())
    vocab = len(tokenizer)
    call = '<tool_call>\n{"name": "overtime_pay", "arguments": {"monthly_wage": "八千"}}\n</tool_call>'
    generated = ids(tokenizer, call)
    logits = step(processor, generated, torch.zeros(vocab))
    assert not processor.in_block(0) and bool((logits > float("-inf")).all())


def test_the_grammar_is_the_forced_call_schema_without_formats(offered):
    grammar = block_grammar(offered)
    assert grammar.startswith('start: "\\n" (%json ') and '"\\n</tool_call>"' in grammar
    schema = call_schema(offered[0]["function"])
    assert "format" not in json.dumps(schema) and schema["properties"]["name"] == {"const": "severance_pay"}
    assert schema["properties"]["arguments"]["additionalProperties"] is False


# ---- the conversation's rules: no call twice, figures copied from the user's words, no call when none is left ----
QUESTION = "工作3年5个月，月薪8000，协商解除，补偿多少"
CALL = {"id": "call_1_0", "type": "function",
        "function": {"name": "severance_pay", "arguments": '{"monthly_wage": "8000", "years": "3年", "months": "5个月"}'}}


def conversation(result: dict | None = None, question: str = QUESTION) -> list[dict]:
    messages = [{"role": "user", "content": question}]
    if result is not None:
        messages += [{"role": "assistant", "content": "", "tool_calls": [CALL]},
                     {"role": "tool", "tool_call_id": "call_1_0", "name": "severance_pay",
                      "content": json.dumps(result, ensure_ascii=False)}]
    return messages


def greedy(processor, tokenizer, preference, start: str, steps: int = 80) -> str:
    generated = ids(tokenizer, start)
    for _ in range(steps):
        token = int(torch.argmax(step(processor, generated, preference)))
        generated.append(token)
        if token == tokenizer.eos_token_id or (len(generated) > len(ids(tokenizer, start)) and not processor.in_block(0)):
            break
    return tokenizer.decode(generated)


def test_figure_arguments_are_spans_of_the_question(tokenizer, offered):
    """A 'model' that wants to write 9999 and invent a start date can only copy the question's figures."""
    processor = ToolCallLogitsProcessor(tokenizer, [offered], len(PROMPT), [tokenizer.eos_token_id], DecodingPolicy(),
                                        conversations=[conversation()])
    preference = torch.zeros(len(tokenizer))
    for rank, text in enumerate(["9", "start", "2019", "}}", "}", "\n", "</", "tool", "_", "call", ">"]):
        for token in ids(tokenizer, text)[:1]:
            preference[token] = 100.0 - rank
    text = greedy(processor, tokenizer, preference, '<tool_call>\n{"name": "severance_pay", "arguments": {')
    turn = parse_tool_calls(text)
    assert turn.errors == [] and len(turn.calls) == 1, text
    arguments = turn.calls[0].arguments
    assert arguments["monthly_wage"] == "8000" and "start_date" not in arguments, arguments
    assert set(arguments) <= {"monthly_wage", "years", "months", "unlawful", "local_average_wage", "local_minimum_wage"}
    assert all(value in ("8000", "3年5个月", "3年", "5个月") for value in arguments.values() if isinstance(value, str))


def test_call_rules_drop_an_answered_tool_and_tools_missing_a_required_figure(offered):
    from lawtune.tools.constrain import call_rules

    names = lambda functions: sorted(f["name"] for f in functions)  # noqa: E731
    both = "工作3年5个月，月薪8000，上个月周末加班16小时，协商解除，补偿和加班费各多少"
    assert names(call_rules(offered, conversation(question=both))) == ["overtime_pay", "severance_pay"]
    # no hours in the question: overtime_pay cannot compute (x-needs-one-of), only severance_pay is callable
    assert names(call_rules(offered, conversation())) == ["severance_pay"]
    # every call of the last round answered: nothing is callable, the model answers
    assert call_rules(offered, conversation({"result": 28000}, both)) == []
    # a failed call may be made again (with other values)
    assert names(call_rules(offered, conversation({"error": "参数有误"}, both))) == ["overtime_pay", "severance_pay"]
    # a round where one call answered and one failed: the one that answered stays out
    mixed = conversation({"result": 28000}, both) + [{"role": "tool", "tool_call_id": "x", "name": "overtime_pay",
                                                      "content": '{"error": "参数有误"}'}]
    assert names(call_rules(offered, mixed)) == ["overtime_pay"]
    # no wage in the question: neither tool can be called (both require monthly_wage)
    assert call_rules(offered, [{"role": "user", "content": "工作3年5个月，协商解除，补偿多少"}]) == []
    # a new user question starts afresh
    again = conversation({"result": 28000}) + [{"role": "assistant", "content": "28000元"},
                                               {"role": "user", "content": "月薪9000呢？"}]
    assert "severance_pay" in names(call_rules(offered, again))
    restricted = next(f for f in call_rules(offered, conversation()) if f["name"] == "severance_pay")["parameters"]
    for way in ways(restricted):
        assert way["properties"]["monthly_wage"] == {"enum": ["8000"]}
        assert "start_date" not in way["properties"] and "unlawful" in way["properties"]


def scripted(processor, tokenizer, script: str, steps: int) -> str:
    """Greedy decoding of a 'model' that wants to write `script`, token by token, and nothing else."""
    wanted, generated = ids(tokenizer, script), []
    for position in range(steps):
        preference = torch.zeros(len(tokenizer))
        if position < len(wanted):
            preference[wanted[position]] = 100.0
        generated.append(int(torch.argmax(step(processor, generated, preference))))
        # outside a block the answer may end at any point (but in the middle of a character's bytes, or, in the
        # answer after results, of a number: 2 of 28000 is no number it may write)
        text = tokenizer.decode(generated)
        assert bool(step(processor, generated, preference)[tokenizer.eos_token_id] > float("-inf")) \
            or processor.in_block(0) or text.endswith("\ufffd") \
            or (processor.rows[0].numbers is not None and re.search(r"[0-9][.,]?$", text) is not None)
    return tokenizer.decode(generated)


def test_after_the_tool_answered_the_turn_cannot_open_a_call(tokenizer):
    """The failure of the measured demo: the same call again after its result. A 'model' that wants to write
    `<tool_call>` cannot complete the tag once the tool has answered; before that it can."""
    severance = [tool.openai() for tool in builtin_tools() if tool.name == "severance_pay"]
    script = '<tool_call>\n{"name": "severance_pay"'
    processor = ToolCallLogitsProcessor(tokenizer, [severance], len(PROMPT), [tokenizer.eos_token_id], DecodingPolicy(),
                                        conversations=[conversation({"result": 28000})])
    text = scripted(processor, tokenizer, script, 20)
    assert "<tool_call>" not in text and not processor.in_block(0), text
    # nor a lookalike tag (a tuned model kept from <tool_call> wrote <tool_call}> instead)
    for lookalike in ("<tool_call}>", "<tool_call >", "<tool_response>"):
        processor = ToolCallLogitsProcessor(tokenizer, [severance], len(PROMPT), [tokenizer.eos_token_id],
                                            DecodingPolicy(), conversations=[conversation({"result": 28000})])
        text = scripted(processor, tokenizer, "28000元" + lookalike, 20)
        assert text.startswith("28000元") and "<tool" not in text, text
    processor = ToolCallLogitsProcessor(tokenizer, [severance], len(PROMPT), [tokenizer.eos_token_id], DecodingPolicy(),
                                        conversations=[conversation()])
    text = scripted(processor, tokenizer, script, 12)
    assert text.startswith("<tool_call>") and processor.in_block(0), text


def test_the_servers_batcher_decodes_under_the_same_rules(tokenizer):
    """`lawtune serve` under tool_choice auto: each sequence's matcher is a LazyCall (the processor's rows), read
    by the batcher's pick_token as its own tensor mask (no bitmask) — after a result no `<tool`, figures copied."""
    from lawtune.modeling.grammar import ll_tokenizer
    from lawtune.serving.engines.batch import Sequence, pick_token
    from lawtune.tools.constrain import LazyCall

    severance = [tool.openai() for tool in builtin_tools() if tool.name == "severance_pay"]
    stops = [tokenizer.eos_token_id]
    ll = ll_tokenizer(tokenizer, stops)

    def serve(messages, script: str, steps: int) -> tuple[str, LazyCall]:
        lazy = LazyCall(tokenizer, ll, severance, messages, stops)
        seq = Sequence(PROMPT, decoding=DecodingPolicy(), stop_ids=frozenset(stops), grammar=lazy)
        wanted = ids(tokenizer, script)
        for position in range(steps):
            preference = torch.zeros(len(tokenizer))
            if position < len(wanted):
                preference[wanted[position]] = 100.0
            token = pick_token(preference, seq)
            seq.generated.append(token)
            if token in stops or (position >= len(wanted) and not lazy.in_block):
                break
        return tokenizer.decode(seq.generated), lazy

    text, _ = serve(conversation({"result": 28000}), '<tool_call>\n{"name": "severance_pay"', 20)
    assert "<tool" not in text, text
    text, lazy = serve(conversation(), '<tool_call>\n{"name": "severance_pay", "arguments": {"monthly_wage": "9999"}}'
                       '\n</tool_call>', 200)
    turn = parse_tool_calls(text)
    assert turn.errors == [] and turn.calls[0].arguments["monthly_wage"] == "8000", text
    # what the server's batcher masks with (modeling.grammar.grammar_mask): the LazyCall's own tensor, no bitmask
    # round trip; rows past the tokenizer's vocabulary (a model's padding rows) are never allowed
    from lawtune.modeling.grammar import grammar_mask

    free = LazyCall(tokenizer, ll, severance, conversation(), stops)  # a call may open: free text is not masked
    assert grammar_mask(free, len(tokenizer)) is None
    padded = grammar_mask(free, len(tokenizer) + 5)
    assert padded.shape == (len(tokenizer) + 5,)
    assert bool(padded[:len(tokenizer)].all()) and not bool(padded[len(tokenizer):].any())
    lazy = LazyCall(tokenizer, ll, severance, conversation({"result": 28000}), stops)  # no call: no `<tool`
    for text in ("28000元", "<too"):
        for token in ids(tokenizer, text):
            lazy.consume_token(token)
        for vocab in (len(tokenizer), len(tokenizer) + 5):
            mask = grammar_mask(lazy, vocab)
            assert mask.shape == (vocab,) and torch.equal(mask, lazy.allowed(vocab))
            assert not bool(mask[len(tokenizer):].any())
    assert not bool(mask[ids(tokenizer, "l")[0]]) and bool(mask[ids(tokenizer, "k")[0]])


def test_a_tool_missing_every_figure_it_needs_one_of_cannot_be_called(offered):
    """severance_pay needs a length of service and overtime_pay some hours (`x-needs-one-of`): a question with
    the wage alone calls neither (the call could only fail), so the turn asks back."""
    from lawtune.tools.constrain import call_rules

    names = lambda text: sorted(f["name"] for f in call_rules(offered, [{"role": "user", "content": text}]))  # noqa: E731
    assert names("月薪8000，公司协商解除，补偿多少？") == []
    assert names("月薪8000，工作3年，公司协商解除，补偿多少？") == ["severance_pay"]
    assert names("月薪8000，2020年3月1日入职，2023年8月31日离职，补偿多少？") == ["severance_pay"]
    assert names("月薪8000，这个月周末加班16小时，加班费多少？") == ["overtime_pay"]
    schema = next(t["function"]["parameters"] for t in offered if t["function"]["name"] == "severance_pay")
    assert schema["x-needs-one-of"] == [["years"], ["months"], ["start_date", "end_date"]]
    # the grammar's JSON Schema carries none of lawtune's x- keys
    grammar_schema = json.dumps(call_schema(offered[0]["function"]))
    assert "x-figure" not in grammar_schema and "x-needs-one-of" not in grammar_schema
    assert "x-label" not in grammar_schema and "x-label" in json.dumps(schema)


def test_needs_one_of_must_name_parameters():
    from lawtune.tools.tool import Tool, needs_one_of

    @needs_one_of(("years",), ("nope",))
    def calc(years: int = 0) -> dict:
        return {"result": years}

    with pytest.raises(ValueError, match="nope"):
        Tool.from_function(calc)


def test_labels_must_name_parameters_and_land_in_the_schema():
    from lawtune.tools.tool import Tool, labels

    @labels(unlawful="违法解除时 true")
    def calc(unlawful: bool = False) -> dict:
        return {"result": unlawful}

    assert Tool.from_function(calc).parameters["properties"]["unlawful"]["x-label"] == "违法解除时 true"

    @labels(nope="x")
    def other(years: int = 0) -> dict:
        return {"result": years}

    with pytest.raises(ValueError, match="nope"):
        Tool.from_function(other)


def test_arbitration_needs_a_date_to_count_from():
    """The boolean-only call (`{"wage_arrears_during_employment": true}`) that the tuned demo model made on
    questions of every kind is not callable without a date in the user's words."""
    from lawtune.tools.constrain import call_rules

    arbitration = [tool.openai() for tool in builtin_tools() if tool.name == "arbitration_deadline"]
    ask = lambda text: [f["name"] for f in call_rules(arbitration, [{"role": "user", "content": text}])]  # noqa: E731
    assert ask("参加工作20年，每年能休几天带薪年假？") == []
    assert ask("请代理律师是全程代理帮忙弄好不用本人出面吗") == []
    assert ask("2024.8.19公司通知我解除劳动合同，劳动仲裁的时效到什么时候？") == ["arbitration_deadline"]


def test_probation_needs_a_length_dates_or_a_contract_kind_said_in_words():
    """The boolean-only call (`{"task_based": true}`) the tuned demo model made on questions of every kind is not
    callable unless the user names that kind of contract (`x-said-as`); a length still makes it callable."""
    from lawtune.tools.constrain import call_rules

    probation = [tool.openai() for tool in builtin_tools() if tool.name == "probation_limits"]
    ask = lambda text: [sorted(f["parameters"]["properties"]) for f in call_rules(probation, [{"role": "user", "content": text}])]  # noqa: E731
    assert ask("请代理律师是全程代理帮忙弄好不用本人出面吗") == []
    assert ask("刚入职新公司，试用期最长多久，试用期工资最低能给多少？") == []  # asked back, not called
    assert ask("签的是无固定期限劳动合同，试用期最长能约定多久？") == [["open_ended"]]
    assert ask("以完成一定工作任务为期限的合同，试用期多久？") == [["task_based"]]
    called = ask("合同期限10个月，合同约定月工资一万九，试用期最长多久？")
    assert called and "contract_months" in called[0] and "agreed_wage" in called[0]
    assert "open_ended" not in called[0] and "task_based" not in called[0]
    # the grammar's JSON Schema carries no x-said-as
    assert "x-said-as" not in json.dumps(call_schema(probation[0]["function"]))


def test_said_as_must_name_boolean_parameters_with_phrases():
    from lawtune.tools.tool import Tool, said_as

    @said_as(open_ended=("无固定期限",))
    def calc(open_ended: bool = False, years: int = 0) -> dict:
        return {"result": years}

    assert Tool.from_function(calc).parameters["properties"]["open_ended"]["x-said-as"] == ["无固定期限"]
    for bad in ({"years": ("三年",)}, {"nope": ("x",)}, {"open_ended": ()}):
        with pytest.raises(ValueError, match="said_as"):
            Tool.from_function(said_as(**bad)(calc))


RESULT = {"result": 28000, "unit": "元", "formula": "工作年限3年5个月；经济补偿 = 3.5个月 × 8000元 = 28000元。",
          "articles": ["《劳动合同法》第四十七条"]}


def test_the_numbers_an_answer_after_results_may_write():
    from lawtune.tools.constrain import answer_numbers

    numbers = set(answer_numbers(conversation(RESULT)))
    # the result and its spellings, the formula's numbers, the cited article in digits, the question's figures
    assert {"28000", "28,000", "3.5", "8000", "8,000", "47", "3", "5"} <= numbers
    assert not {"29000", "56000", "2800", "9999", "2.8"} & numbers
    # a date result: its digit runs with and without the leading zero; the question's 八千 read as 8000
    dated = [{"role": "user", "content": "月薪八千，2024年3月1日被辞退，最晚哪天申请仲裁？"},
             {"role": "assistant", "content": "", "tool_calls": [CALL]},
             {"role": "tool", "tool_call_id": "call_1_0", "name": "arbitration_deadline",
              "content": '{"result":"2025-03-03","articles":["《劳动争议调解仲裁法》第二十七条"]}'}]
    assert {"2025", "03", "3", "8000", "2024", "1", "27"} <= set(answer_numbers(dated))
    # the rule is for the answer after a round of results only
    assert answer_numbers(conversation()) is None
    assert answer_numbers(conversation({"error": "参数有误"})) is None


def figures_processor(tokenizer, messages, policy=None):
    severance = [tool.openai() for tool in builtin_tools() if tool.name == "severance_pay"]
    return ToolCallLogitsProcessor(tokenizer, [severance], len(PROMPT), [tokenizer.eos_token_id],
                                   policy or DecodingPolicy(), conversations=[messages])


def test_after_results_the_answer_can_only_copy_numbers(tokenizer):
    """A 'model' that wants to write an invented figure cannot write it after the tool answered; one that
    copies the result writes exactly what it wants and may end there."""
    import re

    from lawtune.tools.constrain import answer_numbers

    allowed = set(answer_numbers(conversation(RESULT)))
    wanted = "经济补偿为28,000元（28000元），即3.5个月工资，依据第47条。"
    processor = figures_processor(tokenizer, conversation(RESULT))
    assert scripted(processor, tokenizer, wanted, len(ids(tokenizer, wanted))) == wanted
    for invented in ("经济补偿为29000元。", "经济补偿为2800元。", "赔偿金56000元。", "按28000.5元", "共１２元", "约2.8万元"):
        processor = figures_processor(tokenizer, conversation(RESULT))
        text = scripted(processor, tokenizer, invented, len(ids(tokenizer, invented)) + 4)
        text = text.split(tokenizer.eos_token)[0]  # what follows the end of the answer is padding
        numbers = re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", text)
        assert set(numbers) <= allowed and not re.search("[０-９]", text), (invented, text)
    # with the rule off (--no-tool-figures) the invented figure is written
    processor = figures_processor(tokenizer, conversation(RESULT), DecodingPolicy(tool_figures=False))
    assert scripted(processor, tokenizer, "经济补偿为29000元。", 20).startswith("经济补偿为29000元")
    # before any result (the call turn) numbers are free
    processor = figures_processor(tokenizer, conversation())
    assert scripted(processor, tokenizer, "大约29000元。", 12).startswith("大约29000元")


def test_digits_are_not_penalized_in_the_answer_after_results(tokenizer):
    from lawtune.tools.constrain import digit_token_ids

    digits = digit_token_ids(tokenizer)
    written = ids(tokenizer, "补偿28000元，")
    repeated_digits = [token for token in written if token in digits]
    others = [token for token in written if token not in digits]
    assert repeated_digits and others
    scores = torch.full((len(tokenizer),), 4.0)
    processor = figures_processor(tokenizer, conversation(RESULT), DecodingPolicy(repetition_penalty=2.0))
    logits = step(processor, written, scores)
    first = repeated_digits[0]  # starts 28000 again: allowed, and not divided by the penalty
    assert logits[first] == 4.0 and all(logits[token] == 2.0 for token in others if logits[token] > float("-inf"))
    processor = figures_processor(tokenizer, conversation(), DecodingPolicy(repetition_penalty=2.0))
    assert step(processor, written, scores)[first] == 2.0  # elsewhere the answer's penalty is unchanged


def test_the_figures_an_answer_after_results_must_state():
    from lawtune.tools.constrain import result_figures, states_figures

    assert result_figures(conversation(RESULT)) == [["28,000", "28000"]]
    assert result_figures(conversation()) is None and result_figures(conversation({"error": "参数有误"})) is None
    assert result_figures(conversation({"result": None, "formula": "没有截止日"})) == []
    probation = {"result": {"max_probation_months": 1, "min_probation_wage": 15200}}
    assert result_figures(conversation(probation)) == [["1"], ["15,200", "15200"]]
    assert result_figures(conversation({"result": {"max_probation_months": 0, "min_probation_wage": None}})) == []
    dated = result_figures(conversation({"result": "2025-08-09"}))
    assert len(dated) == 1 and {"2025年8月9日", "2025年08月09日", "2025-08-09", "2025.8.9", "2025/8/9"} <= set(dated[0])
    # whole numbers only; the question's figures are no result
    assert states_figures("公司应支付经济补偿28,000元。", [["28,000", "28000"]])
    assert not states_figures("公司应支付280000元或28000.5元。", [["28,000", "28000"]])
    assert not states_figures("月薪8000，工作3年5个月。", result_figures(conversation(RESULT)))
    assert states_figures("最后一天是2025年8月9日。", dated) and not states_figures("2025年8月19日", dated)


def test_with_the_result_figure_rule_the_answer_cannot_end_before_it_states_the_result(tokenizer):
    """A 'model' that wants to end at once after the result ends only once it has written the result's figure;
    with the rule off (the default) it ends where it wants, and before any result it is never held back."""
    stop = tokenizer.eos_token_id
    on = DecodingPolicy(tool_result_figure=True)
    processor = figures_processor(tokenizer, conversation(RESULT), on)
    assert step(processor, ids(tokenizer, "经济补偿依据第四十七条。"), torch.zeros(len(tokenizer)))[stop] == float("-inf")
    written = ids(tokenizer, "经济补偿为28000元。")
    assert step(figures_processor(tokenizer, conversation(RESULT), on), written, torch.zeros(len(tokenizer)))[stop] == 0
    assert step(figures_processor(tokenizer, conversation(RESULT)), ids(tokenizer, "依据第四十七条。"),
                torch.zeros(len(tokenizer)))[stop] == 0
    assert step(figures_processor(tokenizer, conversation(), on), [], torch.zeros(len(tokenizer)))[stop] == 0
    # a result without a figure to state (a deadline that does not run yet) holds nothing back
    empty = figures_processor(tokenizer, conversation({"result": None, "formula": "没有截止日"}), on)
    assert step(empty, ids(tokenizer, "目前没有截止日。"), torch.zeros(len(tokenizer)))[stop] == 0


# ---- what the user's words settle (`x-required-when-said`) --------------------------------------------------------
# phrasings the generator (lawtune.tools.cases) never writes: the phrase lists are legal and lay vocabulary
def settled_call(question: str, name: str, said_required: bool = True) -> dict | None:
    from lawtune.tools.constrain import call_rules

    tools = [tool.openai() for tool in builtin_tools() if tool.name == name]
    functions = call_rules(tools, [{"role": "user", "content": question}], said_required=said_required)
    return functions[0]["parameters"] if functions else None


@pytest.mark.parametrize("question", [
    "单位无缘无故就把我给解雇了，我干了5年，月薪一万，能赔多少",
    "老板非法开除我，入职两年，工资6000，怎么赔？",
    "工作四年，每月9000，公司没有理由就辞退了我，赔偿金多少",
    "公司没有理由辞退，工作四年，每月9000",
    "月薪7000干了3年，属于违法终止劳动合同，要赔多少钱",
    "公司违法裁员，我工作6年，月薪12000",
])
def test_unlawful_is_required_and_true_when_the_user_says_so(question):
    parameters = settled_call(question, "severance_pay")
    assert "unlawful" in parameters["required"] and parameters["properties"]["unlawful"]["const"] is True
    off = settled_call(question, "severance_pay", said_required=False)
    assert "unlawful" not in off["required"] and "const" not in off["properties"]["unlawful"]


@pytest.mark.parametrize("question", [
    "干了3年，月薪8000，公司这样算违法解除吗？",          # asked about
    "干了3年，月薪8000，公司说不是违法辞退，补偿多少",      # denied
    "公司违法拖欠工资，我被迫解除合同，干了3年，月薪8000",  # the employee's own leaving (第三十八条), 违法 in another clause
    "公司拖欠工资，我被迫违法解除？干了3年，月薪8000",
    "工作3年5个月，月薪8000，协商解除，补偿多少",
])
def test_unlawful_stays_optional_when_not_said_as_a_statement(question):
    for way in ways(settled_call(question, "severance_pay")):
        assert "unlawful" not in way["required"] and "const" not in way["properties"]["unlawful"]


def test_overtime_hours_go_to_the_kind_their_clause_names():
    parameters = settled_call("月薪6500，这个月星期天上了10个小时班，五一劳动节又上了8小时，下班后还加了三十小时，怎么算",
                              "overtime_pay")
    properties = parameters["properties"]
    assert properties["rest_day_hours"] == {"enum": ["10个小时"]}
    assert properties["holiday_hours"] == {"enum": ["8小时"]}
    assert properties["weekday_hours"] == {"enum": ["三十小时"]}
    assert {"weekday_hours", "rest_day_hours", "holiday_hours"} <= set(parameters["required"])
    # off: every hours span open to every kind, none required (the rule before)
    off = settled_call("月薪6500，这个月星期天上了10个小时班，五一劳动节又上了8小时，下班后还加了三十小时，怎么算",
                       "overtime_pay", said_required=False)
    assert off["properties"]["rest_day_hours"] == {"enum": ["10个小时", "8小时", "三十小时"]}
    assert not {"weekday_hours", "rest_day_hours", "holiday_hours"} & set(off["required"])


def test_hours_in_a_clause_naming_no_kind_stay_open_and_normal_hours_are_not_overtime():
    # 平时每天工作8小时 is the normal day (平时 names overtime only with 加班): 8小时 is open to each kind, required of none
    properties = settled_call("月薪6000，平时每天工作8小时，礼拜六加班12小时，加班费多少", "overtime_pay")["properties"]
    assert properties["rest_day_hours"] == {"enum": ["12小时", "8小时"]}
    assert properties["weekday_hours"] == {"enum": ["8小时"]} and properties["holiday_hours"] == {"enum": ["8小时"]}
    # no clause names a kind: the plain rule
    plain = settled_call("月薪6000，加班20小时，加班费多少", "overtime_pay")
    assert plain["properties"]["weekday_hours"] == {"enum": ["20小时"]} and plain["required"] == ["monthly_wage"]


def test_a_required_said_boolean_is_forced_by_the_grammar(tokenizer):
    """A 'model' that wants to close the arguments right after the length still has to write unlawful: true."""
    severance = [tool.openai() for tool in builtin_tools() if tool.name == "severance_pay"]
    question = "在单位干了3年，月薪8000，上周被公司无故开除了，能赔多少"
    processor = ToolCallLogitsProcessor(tokenizer, [severance], len(PROMPT), [tokenizer.eos_token_id], DecodingPolicy(),
                                        conversations=[[{"role": "user", "content": question}]])
    preference = torch.zeros(len(tokenizer))
    for rank, text in enumerate(["}}", "}", "\n", "</", "tool", "_", "call", ">"]):
        for token in ids(tokenizer, text)[:1]:
            preference[token] = 100.0 - rank
    text = greedy(processor, tokenizer, preference, '<tool_call>\n{"name": "severance_pay", "arguments": {', steps=300)
    turn = parse_tool_calls(text)
    assert turn.errors == [] and turn.calls[0].arguments.get("unlawful") is True, text
    off = ToolCallLogitsProcessor(tokenizer, [severance], len(PROMPT), [tokenizer.eos_token_id],
                                  DecodingPolicy(tool_said_required=False),
                                  conversations=[[{"role": "user", "content": question}]])
    text = greedy(off, tokenizer, preference, '<tool_call>\n{"name": "severance_pay", "arguments": {', steps=300)
    assert "unlawful" not in parse_tool_calls(text).calls[0].arguments, text


def test_required_when_said_must_name_booleans_or_figures_with_phrases():
    from lawtune.tools.tool import Tool, required_when_said

    @required_when_said(unlawful=("违法解除",), hours=("周末",))
    def calc(unlawful: bool = False, hours: Hours = 0, note: str = "") -> dict:
        return {"result": hours}

    properties = Tool.from_function(calc).parameters["properties"]
    assert properties["unlawful"]["x-required-when-said"] == ["违法解除"]
    assert properties["hours"]["x-required-when-said"] == ["周末"]
    assert "x-required-when-said" not in json.dumps(call_schema(Tool.from_function(calc).openai()["function"]))
    for bad in ({"note": ("x",)}, {"nope": ("x",)}, {"unlawful": ()}, {"unlawful": ("…",)}):
        with pytest.raises(ValueError, match="required_when_said"):
            Tool.from_function(required_when_said(**bad)(calc))


def test_probation_limits_is_callable_only_on_a_question_about_a_probation_period():
    from lawtune.tools.constrain import call_rules

    offered = [tool.openai() for tool in builtin_tools() if tool.name in ("probation_limits", "double_wage_no_contract")]
    ask = lambda text: sorted(f["name"] for f in call_rules(offered, [{"role": "user", "content": text}]))  # noqa: E731
    # dates and no wage: double_wage cannot compute, and probation was never asked about — nothing to call (ask back)
    assert ask("我2021年3月5号进的公司，一直没签合同，2021年10月8号才签，能要多少钱？") == []
    assert ask("我2021年3月5号进的公司，一直没签合同，2021年10月8号才签，月薪七千，能要多少钱？") == [
        "double_wage_no_contract"]
    assert ask("合同从2024年1月1日到2025年12月31日，试用期最多约定多久？") == ["probation_limits"]


def test_said_about_needs_phrases():
    from lawtune.tools.tool import Tool, said_about

    def calc(years: int = 0) -> dict:
        return {"result": years}

    assert Tool.from_function(said_about("试用")(calc)).parameters["x-said-about"] == ["试用"]
    for bad in ((), ("",)):
        with pytest.raises(ValueError, match="said_about"):
            Tool.from_function(said_about(*bad)(calc))


def test_double_wage_dates_go_to_the_parameter_their_clause_names():
    parameters = settled_call("2023年2月6日到岗，单位拖着不签合同，2023年9月1日补订了书面合同，月薪八千五，二倍工资多少",
                              "double_wage_no_contract")
    properties = parameters["properties"]
    assert properties["start_date"] == {"enum": ["2023年2月6日"]}
    assert properties["contract_date"] == {"enum": ["2023年9月1日"]}
    assert "end_date" not in properties  # no date is left for it
    assert {"start_date", "contract_date"} <= set(parameters["required"])


def test_probation_wage_goes_to_the_agreed_wage_and_the_minimum_to_its_own():
    parameters = settled_call("劳动合同两年，说好的月薪是6500，当地最低工资2100，试用期工资最少给多少", "probation_limits")
    properties = parameters["properties"]
    assert properties["agreed_wage"] == {"enum": ["6500"]}
    assert properties["local_minimum_wage"] == {"enum": ["2100"]}
    assert {"agreed_wage", "local_minimum_wage"} <= set(parameters["required"])


def test_a_length_fills_years_or_months_never_both():
    """3年 is whole years and never months, 156个月 months and never years: a length is not written twice (3年 + 3年)."""
    properties = settled_call("在单位干了3年，月薪8000，被无故开除，赔多少", "severance_pay")["properties"]
    assert properties["years"] == {"enum": ["3年"]} and "months" not in properties
    properties = settled_call("干了156个月，月薪一万，协商解除", "severance_pay")["properties"]
    assert properties["months"] == {"enum": ["156个月"]} and "years" not in properties
    # a length in years and months: whole as the years, whole as the months, or its two parts — one way each
    assert lengths(settled_call("干了两年半，月薪一万，协商解除", "severance_pay"), "years", "months") == [
        (["两年"], ["半"], True), (["两年半"], None, False), (None, ["两年半"], False)]
    properties = settled_call("合同签了半年，试用期多久", "probation_limits")["properties"]
    assert "半年" in properties["contract_months"]["enum"]
    # 一年半 is 18 months: as contract_months alone it is right (the model's call, counted exact), and stays allowed
    assert lengths(settled_call("签了一年半的合同，约定月工资10000，试用期多久", "probation_limits"),
                   "contract_years", "contract_months") == [(["一年"], ["半"], True), (["一年半"], None, False),
                                                            (None, ["一年半"], False)]


def lengths(parameters: dict, years: str, months: str) -> list[tuple]:
    """Per way of the schema: the years' spans, the months' spans (None: not given), and whether both are required."""
    return [(way["properties"].get(years, {}).get("enum"), way["properties"].get(months, {}).get("enum"),
             {years, months} <= set(way["required"])) for way in ways(parameters)]


def test_a_length_in_years_and_months_is_given_once():
    """`{"years": "八年十个月", "months": "十个月"}` (the whole and a part: the tuned model's call, s34, which the tool
    refuses) and the whole twice cannot be written; each of the three right ways can, under the grammar."""
    from lawtune.tools.constrain import call_rules

    severance = [tool.openai() for tool in builtin_tools() if tool.name == "severance_pay"]
    parameters = call_rules(severance, [{"role": "user", "content": "我干了八年十个月，月薪一万，公司协商解除，补偿多少"}])[0]["parameters"]
    call = lambda **arguments: any(fits(way, {"monthly_wage": "一万", **arguments}) for way in ways(parameters))  # noqa: E731
    assert call(years="八年", months="十个月") and call(years="八年十个月") and call(months="八年十个月")
    assert not call(years="八年十个月", months="十个月") and not call(years="八年十个月", months="八年十个月")
    assert not call(years="八年") and not call(months="十个月")  # a part alone is a wrong length
    assert "additionalProperties" not in parameters and all(way["additionalProperties"] is False for way in ways(parameters))


# ---- s35: the arrears case of arbitration, contract kinds required when said, tools about what the user names ----
@pytest.mark.parametrize("question", [
    "单位欠了我三个月工资没给，我是2023年5月10日辞职的，仲裁最晚哪天？",
    "上班那会儿老板一直拖欠我们的劳动报酬，2022年12月31日劳动合同终止，还能去仲裁吗，截止到哪天",
])
def test_wages_owed_while_employed_count_from_the_end_of_employment(question):
    """劳动争议调解仲裁法第二十七条第四款: wages owed while employed → the boolean true and the 离职 date as the end of
    employment, both required (the tuned model sent such a date as known_date, s34)."""
    parameters = settled_call(question, "arbitration_deadline")
    properties = parameters["properties"]
    assert properties["wage_arrears_during_employment"]["const"] is True
    assert len(properties["employment_end_date"]["enum"]) == 1
    assert {"wage_arrears_during_employment", "employment_end_date"} <= set(parameters["required"])
    # the rule off: as before (the end date offered, nothing required)
    off = settled_call(question, "arbitration_deadline", said_required=False)
    assert not off.get("required") and "const" not in off["properties"]["wage_arrears_during_employment"]


@pytest.mark.parametrize("question", [
    "2024年3月1日公司通知我解除劳动合同，最晚哪天申请仲裁？",   # 解除 without arrears: the date is known_date's
    "公司没有拖欠工资，2024年3月1日把我辞退了，仲裁时效到什么时候",  # arrears denied
])
def test_the_end_of_employment_is_offered_only_with_wages_owed(question):
    properties = settled_call(question, "arbitration_deadline")["properties"]
    assert "employment_end_date" not in properties and "const" not in properties["wage_arrears_during_employment"]
    assert properties["known_date"] == {"enum": ["2024年3月1日"]}


def test_only_with_must_name_a_parameter_and_a_boolean():
    from lawtune.tools.tool import Tool, only_with

    def calc(day: str | None = None, owed: bool = False, note: str = "") -> dict:
        return {"result": day}

    assert Tool.from_function(only_with(day="owed")(calc)).parameters["properties"]["day"]["x-only-with"] == "owed"
    for bad in ({"nope": "owed"}, {"day": "note"}, {"day": "nope"}):
        with pytest.raises(ValueError, match="only_with"):
            Tool.from_function(only_with(**bad)(calc))


def test_a_contract_kind_said_is_required():
    parameters = settled_call("公司跟我签的是无固定期限的合同，约定月薪9000，试用期最多几个月", "probation_limits")
    assert parameters["properties"]["open_ended"]["const"] is True and "open_ended" in parameters["required"]
    parameters = settled_call("合同是以完成一定工作任务为期限的，试用期能约定吗", "probation_limits")
    assert parameters["properties"]["task_based"]["const"] is True and "task_based" in parameters["required"]
    # asked about, not said: offered, not required
    parameters = settled_call("合同签了3年，这算不算无固定期限？试用期多久", "probation_limits")
    assert "open_ended" not in parameters["required"]


def test_double_wage_and_annual_leave_only_on_questions_about_them():
    from lawtune.tools.constrain import call_rules

    offered = [tool.openai() for tool in builtin_tools() if tool.name in ("double_wage_no_contract", "annual_leave_days")]
    ask = lambda text: sorted(f["name"] for f in call_rules(offered, [{"role": "user", "content": text}]))  # noqa: E731
    # the s34 failures: a 违法辞退 question, and a loan taken 21年 ago
    assert ask("每个月工资9,000元，我在公司干了12年零4个月，老板没有任何理由把我辞退了") == []
    assert ask("21年前在信用社贷过2000元，5年后还清了，现在信用社说没有还，怎么办") == []
    assert ask("月薪9000，入职8个月了公司一直没跟我签劳动合同，能要多少二倍工资") == ["double_wage_no_contract"]
    assert ask("我工作了21年，一年能休几天年假") == ["annual_leave_days"]


def test_a_turn_that_may_not_call_cannot_write_the_tag_in_capitals(tokenizer):
    """An ask-back answer under the no-call grammar wrote `<TOOL_CALL> {…}` as text (s34): any case is kept out."""
    severance = [tool.openai() for tool in builtin_tools() if tool.name == "severance_pay"]
    for lookalike in ("<TOOL_CALL>", "<Tool>", "<tOOl_call>"):
        processor = ToolCallLogitsProcessor(tokenizer, [severance], len(PROMPT), [tokenizer.eos_token_id],
                                            DecodingPolicy(), conversations=[conversation({"result": 28000})])
        text = scripted(processor, tokenizer, "28000元" + lookalike, 20)
        assert text.startswith("28000元") and "<tool" not in text.lower(), text
