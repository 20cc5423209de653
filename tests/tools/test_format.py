"""The `<tool_call>` text format: rendering and parsing, including what a small model gets wrong."""

from __future__ import annotations

import json

from lawtune.modeling.tool_format import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    ParsedCall,
    parse_tool_calls,
    render_assistant_turn,
    render_tool_calls,
    render_tool_response,
)


def openai_call(name, arguments, index=0):
    return {"id": f"call_{index}", "type": "function", "function": {"name": name, "arguments": arguments}}


def test_round_trip_of_one_call_with_a_json_string_arguments():
    text = render_tool_calls([openai_call("severance_pay", '{"monthly_wage": 8000, "years": 3, "months": 5}')])
    assert text == ('<tool_call>\n{"name": "severance_pay", "arguments": {"monthly_wage": 8000, "years": 3, '
                    '"months": 5}}\n</tool_call>')
    turn = parse_tool_calls(text)
    assert turn.content == "" and turn.errors == []
    assert turn.calls == [ParsedCall("severance_pay", {"monthly_wage": 8000, "years": 3, "months": 5})]


def test_several_calls_keep_their_order_and_chinese_stays_readable():
    calls = [openai_call("lookup_article", {"law": "劳动合同法", "article": "第四十七条"}, 0),
             openai_call("annual_leave_days", {"cumulative_work_years": 12}, 1)]
    text = render_tool_calls(calls)
    assert "劳动合同法" in text and text.count(TOOL_CALL_OPEN) == 2 and text.count(TOOL_CALL_CLOSE) == 2
    turn = parse_tool_calls(text)
    assert [call.name for call in turn.calls] == ["lookup_article", "annual_leave_days"]
    assert turn.calls[0].arguments == {"law": "劳动合同法", "article": "第四十七条"}
    assert [call.openai(i)["function"]["arguments"] for i, call in enumerate(turn.calls)] == [
        '{"law": "劳动合同法", "article": "第四十七条"}', '{"cumulative_work_years": 12}']


def test_text_before_the_calls_is_the_content():
    text = render_assistant_turn("我来算一下。", [openai_call("overtime_pay", {"monthly_wage": 8700})])
    assert text.startswith("我来算一下。\n<tool_call>\n")
    turn = parse_tool_calls(text)
    assert turn.content == "我来算一下。"
    assert turn.calls == [ParsedCall("overtime_pay", {"monthly_wage": 8700})]


def test_text_without_calls_is_all_content():
    turn = parse_tool_calls("  经济补偿为28000元。\n")
    assert (turn.content, turn.calls, turn.errors) == ("经济补偿为28000元。", [], [])


def test_broken_json_is_an_error_and_the_next_block_still_parses():
    text = ('<tool_call>\n{"name": "severance_pay", "arguments": {"monthly_wage": 8000,}}\n</tool_call>\n'
            '<tool_call>\n{"name": "annual_leave_days", "arguments": {"cumulative_work_years": 3}}\n</tool_call>')
    turn = parse_tool_calls(text)
    assert turn.calls == [ParsedCall("annual_leave_days", {"cumulative_work_years": 3})]
    assert len(turn.errors) == 1
    assert turn.errors[0].startswith("tool call 1: not valid JSON")


def test_unclosed_block_is_an_error():
    turn = parse_tool_calls('先查一下。<tool_call>\n{"name": "search_law", "arguments": {"query": "加班费"}}')
    assert turn.content == "先查一下。" and turn.calls == []
    assert turn.errors == ["tool call 1: unclosed block: expected </tool_call> after the JSON, the text ends"]


def test_truncated_json_is_an_error():
    turn = parse_tool_calls('<tool_call>\n{"name": "search_law", "arguments": {"query": "加')
    assert turn.calls == [] and len(turn.errors) == 1 and "not valid JSON" in turn.errors[0]


def test_arguments_given_as_a_json_string_inside_the_block():
    payload = json.dumps({"name": "severance_pay", "arguments": json.dumps({"monthly_wage": 8000, "years": 1})})
    turn = parse_tool_calls(f"<tool_call>\n{payload}\n</tool_call>")
    assert turn.errors == [] and turn.calls == [ParsedCall("severance_pay", {"monthly_wage": 8000, "years": 1})]


def test_arguments_that_are_not_an_object_or_a_missing_name_are_errors():
    turn = parse_tool_calls('<tool_call>{"name": "x", "arguments": [1]}</tool_call>'
                            '<tool_call>{"arguments": {}}</tool_call><tool_call>["x"]</tool_call>')
    assert turn.calls == [] and len(turn.errors) == 3
    assert "must be a JSON object" in turn.errors[0]
    assert "needs a function name" in turn.errors[1]
    assert turn.errors[2].startswith("tool call 3: expected a JSON object")


def test_close_tag_inside_an_argument_string_does_not_cut_the_call():
    turn = parse_tool_calls(render_tool_calls([openai_call("search_law", {"query": "a </tool_call> b"})]))
    assert turn.errors == [] and turn.calls[0].arguments == {"query": "a </tool_call> b"}


def test_missing_arguments_mean_no_arguments():
    turn = parse_tool_calls('<tool_call>{"name": "list_things"}</tool_call>')
    assert turn.calls == [ParsedCall("list_things", {})] and turn.errors == []


def test_tool_response_embeds_the_json_result():
    text = render_tool_response("severance_pay", '{"result":28000}')
    assert text == '<tool_response>\n{"name": "severance_pay", "content": {"result": 28000}}\n</tool_response>'
    assert '"content": "超时"' in render_tool_response("x", "超时")
