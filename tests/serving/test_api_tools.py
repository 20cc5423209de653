"""OpenAI tools on the live server (docs/serving.md "Tools"), driven by the official openai SDK on loopback
against the tiny random model: forced calls (`tool_choice` required / named) always parse thanks to the
grammar, streamed calls assemble in the SDK like non-streamed ones, `none` renders no tools, a client-side
tool loop runs, bad tool fields are 400s naming them, and `--tools builtin` runs the agent loop on the
server with its trace in the `lawtune` field.

    .venv/bin/pytest tests/serving/test_api_tools.py -q
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from openai import BadRequestError, OpenAI

from lawtune.tools import builtin_tools, run_tool_call
from live_server import start_server

QUESTION = [{"role": "user", "content": "工作3年5个月，月薪8000，协商解除，补偿多少"}]
# small definitions: the tiny model's context is 1024 tokens. The strings are bounded so a random model
# (which picks any character the grammar allows) closes them.
SEVERANCE = {"type": "function", "function": {"name": "severance_pay", "description": "经济补偿", "parameters": {
    "type": "object", "properties": {"monthly_wage": {"type": "number", "exclusiveMinimum": 0},
                                     "years": {"type": "integer", "minimum": 0, "maximum": 40}},
    "required": ["monthly_wage", "years"]}}}
LOOKUP = {"type": "function", "function": {"name": "lookup_article", "description": "查法条", "parameters": {
    "type": "object", "properties": {"law": {"type": "string", "maxLength": 8}, "article": {"type": "integer"}},
    "required": ["law", "article"]}}}
TOOLS = [SEVERANCE, LOOKUP]
FORCED = dict(max_tokens=300, temperature=1.0)  # room for a whole call; sampling: the grammar does the work


@pytest.fixture(scope="module")
def client(live_server) -> OpenAI:
    return OpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def arguments_of(call) -> dict:
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments, dict)
    return arguments


# ---- tool_choice ------------------------------------------------------------------------------------------


def test_a_named_tool_choice_always_yields_a_parsed_call_of_that_function(client):
    for name, required in (("severance_pay", {"monthly_wage", "years"}), ("lookup_article", {"law", "article"})):
        reply = client.chat.completions.create(model=None, 
            messages=QUESTION, tools=TOOLS, n=3, seed=7,
            tool_choice={"type": "function", "function": {"name": name}}, **FORCED)
        for choice in reply.choices:
            assert choice.finish_reason == "tool_calls", choice
            assert choice.message.content is None
            [call] = choice.message.tool_calls
            assert call.type == "function" and call.function.name == name and call.id.startswith("call_")
            assert set(arguments_of(call)) == required
        assert len({c.message.tool_calls[0].id for c in reply.choices}) == 3


def test_required_yields_calls_of_the_offered_tools_one_each_without_parallel_calls(client):
    reply = client.chat.completions.create(model=None, messages=QUESTION, tools=TOOLS, tool_choice="required", n=4, seed=1,
                                           parallel_tool_calls=False, **FORCED)
    for choice in reply.choices:
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls
        assert call.function.name in ("severance_pay", "lookup_article")
        arguments_of(call)
    parallel = client.chat.completions.create(model=None, messages=QUESTION, tools=TOOLS, tool_choice="required", n=4, seed=1,
                                              **FORCED)
    assert all(1 <= len(c.message.tool_calls) <= 4 and c.finish_reason == "tool_calls" for c in parallel.choices)


def test_a_streamed_call_assembles_in_the_sdk_exactly_as_the_non_streamed_one(client):
    request = dict(messages=QUESTION, tools=TOOLS, tool_choice="required", seed=11, **FORCED)
    whole = client.chat.completions.create(model=None, **request).choices[0]
    with client.chat.completions.stream(model=None, **request) as stream:  # the SDK's stream helper (ChatCompletionStreamState)
        events = [event.type for event in stream]
        streamed = stream.get_final_completion().choices[0]
    assert streamed.finish_reason == whole.finish_reason == "tool_calls"
    assert [(c.function.name, arguments_of(c)) for c in streamed.message.tool_calls] == \
        [(c.function.name, arguments_of(c)) for c in whole.message.tool_calls]
    assert "tool_calls.function.arguments.done" in events and "content.delta" not in events
    # the raw chunks: the call's index, id, type and name first, then its arguments
    raw = [chunk for chunk in client.chat.completions.create(model=None, stream=True, **request) if chunk.choices]
    deltas = [d for chunk in raw for d in chunk.choices[0].delta.tool_calls or []]
    assert deltas[0].index == 0 and deltas[0].id.startswith("call_") and deltas[0].function.name
    assert deltas[0].function.arguments == "" and deltas[1].id is None and deltas[1].function.arguments
    assert raw[-1].choices[0].finish_reason == "tool_calls"


def test_parse_with_a_pydantic_function_tool_gets_an_instance(client):
    """The SDK's strict tools (`openai.pydantic_function_tool`) and `.parse()`: the forced call's arguments
    validate into the Pydantic model."""
    import openai
    from pydantic import BaseModel, Field

    class severance_pay(BaseModel):  # noqa: N801 — the tool's name is the class name
        monthly_wage: int = Field(ge=1, le=99999)
        years: int = Field(ge=0, le=40)

    reply = client.chat.completions.parse(model=None, messages=QUESTION, tools=[openai.pydantic_function_tool(severance_pay)],
                                          tool_choice={"type": "function", "function": {"name": "severance_pay"}},
                                          seed=2, **FORCED)
    parsed = reply.choices[0].message.tool_calls[0].function.parsed_arguments
    assert isinstance(parsed, severance_pay) and 1 <= parsed.monthly_wage <= 99999


def test_tool_choice_none_renders_no_tools_and_auto_renders_them(client):
    plain = client.chat.completions.create(model=None, messages=QUESTION, max_tokens=4, temperature=0)
    none = client.chat.completions.create(model=None, messages=QUESTION, tools=TOOLS, tool_choice="none", max_tokens=4,
                                          temperature=0)
    auto = client.chat.completions.create(model=None, messages=QUESTION, tools=TOOLS, max_tokens=4, temperature=0)
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens < auto.usage.prompt_tokens
    assert none.choices[0].message.content == plain.choices[0].message.content
    assert none.choices[0].message.tool_calls is None


def test_under_auto_the_random_model_answers_in_text(client):
    reply = client.chat.completions.create(model=None, messages=QUESTION, tools=TOOLS, max_tokens=24, seed=3, temperature=1)
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length") and choice.message.tool_calls is None
    assert "<tool_call>" not in (choice.message.content or "")


# ---- bad tool fields: 400 naming the field --------------------------------------------------------------


BAD = {
    "a named tool that is not offered": ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}},
                                         "tool_choice"),
    "required without tools": ({"tool_choice": "required"}, "tool_choice"),
    "a tool of another type": ({"tools": [{"type": "retrieval", "function": SEVERANCE["function"]}]}, "tools[0].type"),
    "a tool without a name": ({"tools": [{"type": "function", "function": {"description": "x"}}]},
                              "tools[0].function.name"),
    "two tools of one name": ({"tools": [SEVERANCE, SEVERANCE]}, "tools"),
    "a tool message answering no call": ({"messages": [*QUESTION, {"role": "tool", "tool_call_id": "call_x",
                                                                   "content": "{}"}]}, "messages[1].tool_call_id"),
    "arguments that are not a JSON object": (
        {"messages": [*QUESTION, {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "severance_pay", "arguments": "[1]"}}]}]},
        "messages[1].tool_calls[0].function.arguments"),
    "tool_calls on a user message": (
        {"messages": [{"role": "user", "content": "x", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, "messages[0].tool_calls"),
    "functions (the deprecated API)": ({"functions": [{"name": "f"}]}, "functions"),
    "parameters that are no object schema": (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
        "tools[0].function.parameters"),
    "a schema the grammar cannot enforce, forced": (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"a": {"type": "wat"}}}}}], "tool_choice": "required"}, "tools"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_tool_fields_are_a_400_naming_the_field(live_server, case):
    extra, param = BAD[case]
    response = httpx.post(live_server.url + "/v1/chat/completions",
                          json={"messages": QUESTION, "max_tokens": 4, **extra}, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param, response.json()


def test_an_assistant_message_with_tool_calls_and_no_content_is_accepted(client):
    call = {"id": "call_1", "type": "function", "function": {"name": "severance_pay",
                                                             "arguments": '{"monthly_wage": 8000, "years": 3}'}}
    messages = [*QUESTION, {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"result": 28000}'}]
    with pytest.raises(BadRequestError):  # content left out on a user message is still an error
        client.chat.completions.create(model=None, messages=[{"role": "user"}], max_tokens=2)
    reply = client.chat.completions.create(model=None, messages=messages, max_tokens=3)
    assert reply.choices[0].finish_reason in ("stop", "length")


# ---- --tools builtin: the agent loop on the server -----------------------------------------------------


@pytest.fixture(scope="module")
def long_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny base model with a long context: the built-in tools' definitions alone are ~5000 tokens of the
    tiny tokenizer (byte-level, 600 tokens)."""
    folder = tmp_path_factory.mktemp("long") / "tiny-long"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 16384
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def long_chat_format(long_model_dir):
    from transformers import AutoTokenizer

    from lawtune.modeling.chat import ChatFormat, load_template

    return ChatFormat(AutoTokenizer.from_pretrained(long_model_dir), load_template("gemma"))


@pytest.fixture(scope="module")
def agent_server(long_model_dir):
    """The long-context tiny model served with --tools builtin."""
    from lawtune.serving.settings import ServeSettings

    live = start_server(ServeSettings(model=str(long_model_dir), dtype="float32", default_max_tokens=24,
                                      tools="builtin", tool_rounds=2, tool_timeout_s=5))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def agent_client(agent_server) -> OpenAI:
    return OpenAI(base_url=agent_server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_server_side_tools_run_the_forced_call_and_trace_it(agent_client):
    reply = agent_client.chat.completions.create(model=None, 
        messages=QUESTION, seed=3, temperature=1.0, max_tokens=300,
        tool_choice={"type": "function", "function": {"name": "severance_pay"}})
    choice, trace = reply.choices[0], reply.model_extra["lawtune"]["tools"]
    assert choice.message.tool_calls is None  # the server ran them: the client sees the answer
    assert choice.finish_reason in ("stop", "length") and "<tool_call>" not in choice.message.content
    assert trace["rounds"] >= 1 and trace["finish"] in ("answer", "length", "max_rounds")
    first = trace["calls"][0]
    assert first["round"] == 1 and first["name"] == "severance_pay" and "monthly_wage" in first["arguments"]
    # the random model's figures: the tool computed them (citing its article) or said what is wrong
    if first["ok"]:
        assert isinstance(first["result"]["result"], (int, float)) and first["result"]["articles"]
    else:
        assert first["result"]["error"]
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 2000  # two rounds of the compact definitions


def test_server_side_tools_stream_the_answer_with_the_trace_on_the_last_chunk(agent_client):
    request = dict(messages=QUESTION, seed=3, temperature=1.0, max_tokens=300,
                   tool_choice={"type": "function", "function": {"name": "severance_pay"}})
    chunks = list(agent_client.chat.completions.create(model=None, stream=True, **request))
    whole = agent_client.chat.completions.create(model=None, **request)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].model_extra["lawtune"]["tools"]["calls"][0]["arguments"] == \
        whole.model_extra["lawtune"]["tools"]["calls"][0]["arguments"]


def test_server_side_tools_step_aside_for_a_request_with_its_own_tools_or_none(agent_client):
    own = agent_client.chat.completions.create(model=None, messages=QUESTION, tools=[LOOKUP], max_tokens=300, temperature=1.0,
                                               tool_choice="required", seed=2)
    assert own.choices[0].message.tool_calls[0].function.name == "lookup_article"
    assert "lawtune" not in (own.model_extra or {})
    none = agent_client.chat.completions.create(model=None, messages=QUESTION, tool_choice="none", max_tokens=3)
    assert "lawtune" not in (none.model_extra or {}) and none.usage.prompt_tokens < 200
    answered = agent_client.chat.completions.create(model=None, messages=QUESTION, max_tokens=8, seed=4)  # auto: no call made
    assert answered.model_extra["lawtune"]["tools"] == {"rounds": 0, "finish": "answer", "calls": []}
    with pytest.raises(BadRequestError) as refused:
        agent_client.chat.completions.create(model=None, messages=QUESTION, n=2, max_tokens=3)
    assert refused.value.body["param"] == "n"
    with pytest.raises(BadRequestError) as unknown:
        agent_client.chat.completions.create(model=None, messages=QUESTION, max_tokens=3,
                                             tool_choice={"type": "function", "function": {"name": "nope"}})
    assert unknown.value.body["param"] == "tool_choice"


# ---- a client-side tool loop ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_side_tool_loop_runs(agent_client, long_chat_format, stream):
    """call → run the tool (lawtune's real severance_pay) → send the `tool` message → the model answers.
    (On the long-context server: the tool's result outgrows the tiny run's 1024 tokens. A request with
    tools of its own is answered with tool calls, never by the server's tools.)"""
    request = dict(messages=QUESTION, tools=TOOLS, seed=5,
                   tool_choice={"type": "function", "function": {"name": "severance_pay"}}, **FORCED)
    if stream:
        with agent_client.chat.completions.stream(model=None, **request) as events:
            message = events.get_final_completion().choices[0].message
    else:
        message = agent_client.chat.completions.create(model=None, **request).choices[0].message
    [call] = message.tool_calls
    outcome = run_tool_call(builtin_tools(), call.function.name, call.function.arguments)
    assert "result" in outcome.content or "error" in outcome.content
    messages = [*QUESTION, message.model_dump(exclude_none=True),  # the SDK's message, appended back as is
                {"role": "tool", "tool_call_id": call.id, "content": outcome.message_content()}]
    answer = agent_client.chat.completions.create(model=None, messages=messages, tools=TOOLS, max_tokens=16, seed=5)
    assert answer.choices[0].finish_reason in ("stop", "length")
    if outcome.ok:  # under auto the conversation's rules hold here too: after a result, no call (not even `<tool`)
        assert answer.choices[0].message.tool_calls is None and "<tool" not in answer.choices[0].message.content
    # the prompt held the call turn and the tool's result, rendered by the run's chat template
    rendered = [*QUESTION, {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "name": "severance_pay", "content": outcome.message_content()}]
    assert answer.usage.prompt_tokens == len(long_chat_format.encode_prompt(rendered, tools=TOOLS))
    assert "<tool_response>" in long_chat_format.render(rendered, add_generation_prompt=True, tools=TOOLS)


def test_server_side_tools_need_a_local_engine():
    from pydantic import ValidationError

    from lawtune.serving.settings import ServeSettings

    with pytest.raises(ValidationError, match="need a local engine"):
        ServeSettings(upstream="http://127.0.0.1:1", tools="builtin")
