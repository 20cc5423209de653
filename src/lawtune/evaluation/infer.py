"""`lawtune infer RUN --prompt "..."` (one shot) and `lawtune chat RUN` (multi-turn with history).

    lawtune infer runs/demo --prompt "劳动合同到期不续签有补偿吗？"          # greedy: same answer every time
    lawtune infer runs/demo --prompt "..." --sample --temperature 0.8 --seed 1 # sampling, opt-in
    lawtune infer runs/demo --base-only --prompt "..."                        # ask the base model
    lawtune chat runs/demo                                                    # /reset clears history, /exit quits

Both format prompts with the run's stored chat template (the one used in training).
"""

from __future__ import annotations

from typing import Any

from lawtune.evaluation.generation import GenerationSettings, decode_new_tokens, generation_config, prompt_ids


def answer(loaded: Any, messages: list[dict[str, str]], settings: GenerationSettings, stream: bool = False) -> str:
    """The model's reply to a conversation ending with a user turn (streamed to stdout when `stream`)."""
    import torch
    from transformers import TextStreamer

    ids = prompt_ids(loaded.chat, messages, settings.max_input_length)
    streamer = TextStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    if settings.do_sample:
        torch.manual_seed(settings.seed)
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            generation_config=generation_config(loaded, settings), streamer=streamer,
        )
    return decode_new_tokens(loaded, output[0, len(ids):].tolist()).text


def infer(spec: str, prompt: str, settings: GenerationSettings, *, base_only: bool = False, system: str | None = None,
          dtype: str = "float32", stream: bool = False) -> str:
    from lawtune.modeling.loading import load_model

    loaded = load_model(spec, base_only=base_only, dtype=dtype, merge=True)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return answer(loaded, messages, settings, stream=stream)


def chat_loop(spec: str, settings: GenerationSettings, *, base_only: bool = False, system: str | None = None,
              dtype: str = "float32", read=input, write=print) -> list[dict[str, str]]:
    """Read questions until /exit or end of input; keep the history; return it."""
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
        reply = answer(loaded, history, settings, stream=True)
        history.append({"role": "assistant", "content": reply})
    return history
