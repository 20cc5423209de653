"""The agent loop: model → tool calls → run them → tool turns → model, for at most `max_rounds` rounds.

    lawtune infer runs/demo --tools builtin --prompt "工作3年5个月，月薪8000，协商解除，补偿多少"
    lawtune serve runs/demo --open --tools builtin [--kb kb.sqlite]     # server-side tools, trace in `lawtune`

    agent = Agent(builtin_tools(kb=None), max_rounds=4, timeout=5.0)
    result = run_agent(agent, ask, messages)     # ask(conversation, tool_definitions) -> the model's text
    result.answer, result.finish, result.trace() # finish: "answer" | "max_rounds" | "length"

The model writes calls as `<tool_call>` blocks (lawtune.modeling.tool_format); `Agent.read` parses a turn and
`Agent.run_round` runs its calls with `run_tool_call` (which never raises: an unknown tool, bad arguments, a
tool that raises or outlives its timeout all come back as an `{"error": …}` result) and returns the turns to
append: the assistant's call turn and one tool turn per call. A block that does not parse is answered the
same way, with an error result the model can read. A model still calling after `max_rounds` rounds gets no
more: the loop ends with finish "max_rounds" and `LOOP_MESSAGE` as the answer, never a hang.

The serving side drives the same `Agent` round by round on the engine (lawtune.serving.tool_agent), so
`infer`, `chat` and `serve` share the loop's rules. In `infer` / `chat` (and `eval`) the model's turns are
decoded under the lazy call grammar with the conversation's rules (lawtune.tools.constrain.call_rules): after a
round whose calls all answered the turn answers, figures are copied from the user's words, and a turn with no
callable tool answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from lawtune.tools import Tool, run_tool_call
from lawtune.modeling.tool_format import parse_tool_calls

DEFAULT_ROUNDS = 4
DEFAULT_TIMEOUT_S = 5.0
LOOP_MESSAGE = "（模型连续调用工具 {rounds} 轮仍未给出回答，已停止。请换一种问法，或把问题拆小。）"


@dataclass
class CallRecord:
    """One call the model made in round `round` (1-based) and what it got back."""

    round: int
    id: str
    name: str
    arguments: Any  # a dict when it parsed; the raw block text when it did not
    ok: bool
    result: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"round": self.round, "id": self.id, "name": self.name, "arguments": self.arguments, "ok": self.ok,
                "result": self.result}


@dataclass
class Turn:
    """The model's text of one round, read: content before the calls, the calls, blocks that did not parse."""

    content: str
    calls: list[tuple[str, dict[str, Any]]]  # (name, arguments)
    errors: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return not self.calls and not self.errors


@dataclass
class AgentResult:
    answer: str
    finish: str  # "answer": the model answered; "max_rounds": it kept calling; "length": no room left
    rounds: int  # tool rounds run
    calls: list[CallRecord]
    messages: list[dict[str, Any]]  # the whole conversation, tool turns included

    def trace(self) -> dict[str, Any]:
        """What API responses carry in `lawtune.tools` (and `infer` prints)."""
        return {"rounds": self.rounds, "finish": self.finish, "calls": [call.as_dict() for call in self.calls]}


class Agent:
    def __init__(self, tools: list[Tool], max_rounds: int = DEFAULT_ROUNDS, timeout: float = DEFAULT_TIMEOUT_S):
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be ≥ 1, got {max_rounds}")
        self.tools, self.max_rounds, self.timeout = list(tools), max_rounds, timeout

    def definitions(self) -> list[dict[str, Any]]:
        """The tools as OpenAI definitions, for the chat template."""
        return [tool.openai() for tool in self.tools]

    @staticmethod
    def read(text: str) -> Turn:
        parsed = parse_tool_calls(text)
        return Turn(parsed.content, [(call.name, dict(call.arguments)) for call in parsed.calls], list(parsed.errors))

    def run_round(self, turn: Turn, round_number: int) -> tuple[list[dict[str, Any]], list[CallRecord]]:
        """Run the turn's calls (each under the timeout); the turns to append and what each call got."""
        calls, records, results = [], [], []
        for index, (name, arguments) in enumerate(turn.calls):
            call_id = f"call_{round_number}_{index}"
            outcome = run_tool_call(self.tools, name, arguments, timeout=self.timeout)
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}})
            results.append({"role": "tool", "tool_call_id": call_id, "name": name,
                            "content": outcome.message_content()})
            records.append(CallRecord(round_number, call_id, name, arguments, outcome.ok, outcome.content))
        for index, error in enumerate(turn.errors):  # a block that did not parse: the model reads why
            call_id = f"call_{round_number}_bad{index}"
            content = {"error": f"工具调用无法解析（{error}）。请只输出 <tool_call>{{\"name\": 工具名, "
                                f"\"arguments\": {{参数}}}}</tool_call>，参数为 JSON 对象。"}
            results.append({"role": "tool", "tool_call_id": call_id, "name": "invalid_call",
                            "content": json.dumps(content, ensure_ascii=False)})
            records.append(CallRecord(round_number, call_id, "invalid_call", error, False, content))
        assistant: dict[str, Any] = {"role": "assistant", "content": turn.content}
        if calls:
            assistant["tool_calls"] = calls
        return [assistant, *results], records


def run_agent(agent: Agent, ask: Callable[[list[dict[str, Any]], list[dict[str, Any]]], str],
              messages: list[dict[str, Any]]) -> AgentResult:
    """Ask, run the calls, ask again, … until the model answers without a call or the rounds run out.

    `ask(conversation, definitions)` returns the model's text for a conversation ending with a user or tool
    turn (e.g. `lawtune.evaluation.infer.answer`)."""
    conversation, records = list(messages), []
    definitions = agent.definitions()
    for round_number in range(1, agent.max_rounds + 2):
        turn = agent.read(ask(conversation, definitions))
        if turn.final:
            conversation.append({"role": "assistant", "content": turn.content})
            return AgentResult(turn.content, "answer", round_number - 1, records, conversation)
        if round_number > agent.max_rounds:
            break
        appended, done = agent.run_round(turn, round_number)
        conversation += appended
        records += done
    message = LOOP_MESSAGE.format(rounds=agent.max_rounds)
    return AgentResult(message, "max_rounds", agent.max_rounds, records, conversation)
