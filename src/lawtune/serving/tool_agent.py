"""Server-side tools (`lawtune serve --tools builtin`): the agent loop of lawtune.tools.agent on an engine.

    lawtune serve runs/demo --open --tools builtin            # a request without `tools` of its own
    curl … -d '{"messages": [{"role": "user", "content": "工作3年5个月，月薪8000，协商解除，补偿多少"}]}'
    → "content": "…28000…", "lawtune": {"tools": {"rounds": 1, "finish": "answer", "calls": [{"name":
      "severance_pay", "arguments": {…}, "ok": true, "result": {"result": 28000, "articles": [...]}}]}}

`AgentEngine(engine, agent).generate(request)` looks like one generation to the app and the gateway (one
admission, one slot, one deadline): each round generates on the inner engine, the model's text is read as it
comes (`CallStream`: content is passed on at once, `<tool_call>` blocks are held), the calls run off the
event loop (each under the agent's timeout), their results are appended as tool turns, and the next round is
prompted with the whole conversation. The last `Finished` carries the trace in its `lawtune` field. Rounds
stop when the model answers, when `max_rounds` calls have run (finish "max_rounds", a clear message as the
answer), or when the conversation no longer fits the context (finish "length").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any, AsyncIterator

from lawtune.serving.engines import Engine, Finished, GenerationEvent, GenerationRequest, TextDelta, Usage
from lawtune.serving.tool_calls import CallStream, Content
from lawtune.tools.agent import LOOP_MESSAGE, Agent, CallRecord, Turn

NO_ROOM = "（对话加上工具结果已超出模型的上下文长度，无法继续。）"


class AgentEngine:
    """The engine interface's `generate`, running the agent loop on `engine` (n = 1; the app checks)."""

    def __init__(self, engine: Engine, agent: Agent):
        self.engine, self.agent = engine, agent

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        conversation = list(request.prompt.messages or [])
        definitions = self.agent.definitions()
        records: list[CallRecord] = []
        prompt, used = request.prompt, Usage(0, 0)
        said = False  # content was passed on in an earlier round: the next round's starts on a new line

        def trace(finish: str, rounds: int) -> dict[str, Any]:
            return {"tools": {"rounds": rounds, "finish": finish, "calls": [r.as_dict() for r in records]}}

        for round_number in range(1, self.agent.max_rounds + 2):
            stream, finished, fresh = CallStream(), None, said
            limit = self.engine.context_length(request.model)
            budget = request.max_tokens if limit is None else min(request.max_tokens, limit - prompt.tokens)
            if budget < 1:
                yield TextDelta(("\n" if said else "") + NO_ROOM)
                yield Finished("length", used, 0, lawtune=trace("length", round_number - 1))
                return
            # a forced tool_choice (its grammar) holds for the first round only: then the model decodes under the
            # lazy call grammar with the conversation's rules (after results that all answered: no call)
            step = dataclasses.replace(request, prompt=prompt, max_tokens=budget, n=1,
                                       grammar=request.grammar if round_number == 1 else None,
                                       tool_rules=request.tool_rules or round_number > 1)
            async with contextlib.aclosing(self.engine.generate(step)) as events:
                async for event in events:
                    if isinstance(event, Finished):
                        finished = event
                        continue
                    for piece in stream.push(event.text) if event.text else []:
                        if isinstance(piece, Content):
                            yield TextDelta(("\n" if fresh else "") + piece.text)
                            fresh, said = False, True
            for piece in stream.finish():
                if isinstance(piece, Content):
                    yield TextDelta(("\n" if fresh else "") + piece.text)
                    fresh, said = False, True
            assert finished is not None  # an engine ends every choice with one Finished
            used = Usage(used.prompt_tokens + finished.usage.prompt_tokens,
                         used.completion_tokens + finished.usage.completion_tokens)
            turn = Turn(stream.content, [(call.name, call.arguments) for call in stream.calls], stream.problems)
            if turn.final or (not turn.calls and finished.finish_reason != "stop"):  # answered, or cut mid-call
                yield Finished(finished.finish_reason, used, 0, lawtune=trace(
                    "answer" if turn.final else finished.finish_reason, round_number - 1))
                return
            if round_number > self.agent.max_rounds:
                yield TextDelta(("\n" if said else "") + LOOP_MESSAGE.format(rounds=self.agent.max_rounds))
                yield Finished("stop", used, 0, lawtune=trace("max_rounds", self.agent.max_rounds))
                return
            appended, done = await asyncio.to_thread(self.agent.run_round, turn, round_number)
            conversation += appended
            records += done
            prompt = await asyncio.to_thread(self.engine.prompt, request.model, messages=conversation,
                                             tools=definitions)
