"""`lawtune infer RUN --prompt "..."` (one shot) and `lawtune chat RUN` (multi-turn with history).

    lawtune infer runs/demo --prompt "劳动合同到期不续签有补偿吗？"          # greedy: same answer every time
    lawtune infer runs/demo --prompt "..." --sample --temperature 0.8 --seed 1 # sampling, opt-in
    lawtune infer runs/demo --base-only --prompt "..."                        # ask the base model
    lawtune chat runs/demo                                                    # /reset clears history, /exit quits
    lawtune infer runs/demo --kb kb.sqlite --prompt "..."                     # with retrieved articles (lawtune.kb.rag)
    lawtune infer runs/demo --tools builtin --prompt "工作3年5个月，月薪8000，协商解除，补偿多少"   # the agent loop

Both format prompts with the run's stored chat template (the one used in training) and decode with the
same policy as eval and serve (`lawtune.modeling.decoding`): repetition control on the answer only, and
the repetition stop (a looping answer ends at the last sentence before the loop).
"""

from __future__ import annotations

from typing import Any

from lawtune.evaluation.generation import (Generation, GenerationSettings, decode_new_tokens, decoding_hooks,
                                          generation_config, prompt_ids)
from lawtune.modeling.decoding import STREAM_HOLD_CHARS, RepetitionWatch, TextStream


class _Printer:
    """A transformers streamer that prints the answer as it comes, through the same `TextStream` as the
    server: text of a possible loop is held back (at most STREAM_HOLD_CHARS characters), so a repetition
    stop rarely has to leave printed text standing."""

    def __init__(self, loaded: Any, settings: GenerationSettings, write=print):
        watch = RepetitionWatch() if settings.decoding.repetition_stop else None
        self.stream = TextStream(loaded.tokenizer, watch=watch, hold=STREAM_HOLD_CHARS)
        self.stops = set(loaded.chat.stop_token_ids)
        self.write, self.prompt_seen, self.done = write, False, False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() hands over the prompt first
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if self.done or token in self.stops:
                self.done = True
                return
            self._show(self.stream.push(token))
            self.done = self.stream.stopped

    def end(self) -> None:
        self._show(self.stream.flush())
        self.write("", flush=True)

    def _show(self, text: str) -> None:
        if text:
            self.write(text, end="", flush=True)


def answer(loaded: Any, messages: list[dict[str, Any]], settings: GenerationSettings, stream: bool = False,
           write=print, tools: list[dict[str, Any]] | None = None, cite: Any = None) -> Generation:
    """The model's reply to a conversation ending with a user (or tool) turn (printed as it comes when
    `stream`); `tools`: OpenAI tool definitions the prompt offers; `cite`: the citation constraint of its
    retrieved articles (`Rag.constraint`)."""
    import torch

    ids = prompt_ids(loaded.chat, messages, settings.max_input_length, tools=tools)
    streamer = _Printer(loaded, settings, write) if stream else None
    if settings.do_sample:
        torch.manual_seed(settings.seed)
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            generation_config=generation_config(loaded, settings), streamer=streamer,
            **decoding_hooks(loaded, settings.decoding, rows=1, prompt_width=len(ids), tools=[tools] if tools else None,
                             conversations=[messages] if tools else None, cite=cite),
        )
    return decode_new_tokens(loaded, output[0, len(ids):].tolist(), settings.decoding)


def _attributed(rag: Any, augmented: Any, text: str, streamed: bool, write=print) -> str:
    """The answer with the retrieved articles it repeats named (`Rag.attribute`); after an answer already printed
    (`streamed`: streamed, or printed by the agent loop) the naming line is printed on its own."""
    attributed = rag.attribute(text, augmented.hits)
    if streamed and attributed.added:  # the streamed answer ended with a line break: a blank line, then the line
        write(f"\n{attributed.line}")
    return attributed.text


def _show_sources(rag: Any, augmented: Any, text: str, write=print) -> None:
    """After an answer with --kb: the articles it was given and the verdict of each citation it makes."""
    for n, hit in enumerate(augmented.hits, 1):
        write(f"  [资料{n}] {hit.item.cite()}  (score {hit.score:.2f})")
    for verdict in rag.check(text):
        write(f"  引用 {verdict['text']}: {verdict['verdict']}")


def with_tools(loaded: Any, agent: Any, messages: list[dict[str, Any]], settings: GenerationSettings,
               write=print) -> Any:
    """The agent loop (lawtune.tools.agent) on `loaded`: each call and its result printed as it runs, the
    answer after them. Returns the AgentResult (its `messages` hold the tool turns)."""
    from lawtune.tools.agent import run_agent

    shown = len(messages)

    def show(conversation: list[dict[str, Any]]) -> None:
        nonlocal shown
        for message in conversation[shown:]:
            for call in message.get("tool_calls") or []:
                write(f"  [调用工具] {call['function']['name']} {call['function']['arguments']}")
            if message["role"] == "tool":
                write(f"  [工具结果] {message['name']}: {message['content']}")
        shown = len(conversation)

    def ask(conversation: list[dict[str, Any]], definitions: list[dict[str, Any]]) -> str:
        show(conversation)
        return answer(loaded, conversation, settings, tools=definitions).text

    result = run_agent(agent, ask, messages)
    show(result.messages)
    if result.finish != "answer":
        write(f"  [工具] 结束：{result.finish}")
    write(result.answer)
    return result


def infer(spec: str, prompt: str, settings: GenerationSettings, *, base_only: bool = False, system: str | None = None,
          dtype: str = "float32", stream: bool = False, rag: Any = None, write=print, agent: Any = None) -> str:
    """One answer; with `rag` (lawtune.kb.rag.Rag) the question is asked with retrieved articles, which are
    printed after the answer together with the verdicts of its citations; with `agent`
    (lawtune.tools.agent.Agent) through the agent loop, each tool call printed."""
    from lawtune.modeling.loading import load_model

    loaded = load_model(spec, base_only=base_only, dtype=dtype, merge=True)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    if agent is not None:
        augmented = rag.augment(messages) if rag is not None else None
        text = with_tools(loaded, agent, augmented.messages if augmented else messages, settings, write).answer
        if augmented is not None:  # the answer is printed: the attribution line after it
            text = _attributed(rag, augmented, text, True, write)
            _show_sources(rag, augmented, text, write)
        return text
    if rag is None:
        return answer(loaded, messages, settings, stream=stream, write=write).text
    augmented = rag.augment(messages)
    text = answer(loaded, augmented.messages, settings, stream=stream, write=write,
                  cite=rag.constraint([augmented.hits]) if augmented.hits else None).text
    text = _attributed(rag, augmented, text, stream, write)
    if not stream:
        write(text)
    _show_sources(rag, augmented, text, write)
    return text


def chat_loop(spec: str, settings: GenerationSettings, *, base_only: bool = False, system: str | None = None,
              dtype: str = "float32", read=input, write=print, rag: Any = None, agent: Any = None
              ) -> list[dict[str, Any]]:
    """Read questions until /exit or end of input; keep the history; return it.

    With `rag` each question is asked with the articles retrieved for it; the history keeps the plain
    questions (only the newest turn carries articles, as in `lawtune serve --kb`)."""
    from lawtune.modeling.loading import load_model

    loaded = load_model(spec, base_only=base_only, dtype=dtype, merge=True)
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    write(f"{loaded.name}: ask a legal question (/reset clears the history, /exit quits)")
    while True:
        try:
            question = read("你: ").strip()
        except EOFError:
            break
        if question in ("/exit", "/quit"):
            break
        if question == "/reset":
            history = list(start)
            write("(history cleared)")
            continue
        if not question:
            continue
        history.append({"role": "user", "content": question})
        write("助手: ", end="", flush=True)
        augmented = rag.augment(history) if rag is not None else None
        asked = augmented.messages if augmented else history
        if agent is not None:  # the tool turns stay out of the history: the next question starts clean
            write("")
            text = with_tools(loaded, agent, asked, settings, write).answer
        else:
            cite = rag.constraint([augmented.hits]) if augmented is not None and augmented.hits else None
            text = answer(loaded, asked, settings, stream=True, write=write, cite=cite).text
        if augmented is not None:  # the answer is printed: the attribution line after it
            text = _attributed(rag, augmented, text, True, write)
            _show_sources(rag, augmented, text, write)
        history.append({"role": "assistant", "content": text})
    return history
