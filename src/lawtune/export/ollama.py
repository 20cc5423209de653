"""An Ollama `Modelfile` whose TEMPLATE says what the run's Jinja chat template says.

    text = modelfile(chat, from_file="model-Q4_K_M.gguf")                          # the merged model
    text = modelfile(chat, from_file="base-Q4_K_M.gguf", adapter="adapter-f16.gguf")  # base + GGUF LoRA

The translation is not a Jinja → Go compiler: the run's template is rendered with marker contents, and the
pieces it puts around each role (Gemma: `<start_of_turn>user\\n` … `<end_of_turn>\\n`) become the pieces of
a Go template over Ollama's `.Messages`. Two system-message shapes are understood — a turn of its own, or
folded into the first user turn (Gemma) — and anything else is an error asking for a hand-written TEMPLATE.
The BOS token is left to the engine (llama.cpp adds it from the GGUF), as Ollama's own templates do.
"""

from __future__ import annotations

from lawtune.errors import LawtuneError
from lawtune.modeling.chat import ChatFormat
from lawtune.modeling.decoding import DecodingPolicy

_U, _A, _S = "\u2063USER\u2063", "\u2063ANSWER\u2063", "\u2063SYSTEM\u2063"


def _split(text: str, marker: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise LawtuneError("the chat template does not render each message once; write the Ollama TEMPLATE by hand")
    before, after = text.split(marker)
    return before, after


def template_pieces(chat: ChatFormat) -> dict[str, str]:
    """The literal text the template puts around user / assistant / system messages and the answer header."""
    bos = chat.tokenizer.bos_token or ""
    user_only = chat.render([{"role": "user", "content": _U}])
    prompt = chat.render([{"role": "user", "content": _U}], add_generation_prompt=True)
    pair = chat.render([{"role": "user", "content": _U}, {"role": "assistant", "content": _A}])
    user_before, user_after = _split(user_only, _U)
    if bos and user_before.startswith(bos):
        user_before = user_before[len(bos):]
    if not prompt.startswith(user_only):
        raise LawtuneError("the chat template's generation prompt is not appended after the turns; write the Ollama TEMPLATE by hand")
    header = prompt[len(user_only):]
    answer_part = pair[len(user_only):]
    answer_before, answer_after = _split(answer_part, _A)

    with_system = chat.render([{"role": "system", "content": _S}, {"role": "user", "content": _U}])
    system_before, rest = _split(with_system, _S)
    if bos and system_before.startswith(bos):
        system_before = system_before[len(bos):]
    if system_before == user_before:  # folded into the first user turn: "<user prefix>SYSTEM<sep>USER"
        separator, _ = _split(rest, _U)
        return {"user_before": user_before, "user_after": user_after, "answer_before": answer_before,
                "answer_after": answer_after, "header": header, "system_fold": separator}
    system_after = rest[: len(rest) - len(user_only[len(bos):])] if rest.endswith(user_only[len(bos):]) else None
    if system_after is None:
        raise LawtuneError("the chat template places system messages in a way lawtune cannot translate; "
                           "write the Ollama TEMPLATE by hand")
    return {"user_before": user_before, "user_after": user_after, "answer_before": answer_before,
            "answer_after": answer_after, "header": header, "system_before": system_before, "system_after": system_after}


def go_template(pieces: dict[str, str]) -> str:
    """The Go template over Ollama's `.Messages` (`.System` is the first system message)."""
    user = "{{ .Content }}"
    if "system_fold" in pieces:  # Gemma: the system text opens the first user turn
        user = "{{ if and (eq $i 1) $.System }}{{ $.System }}" + pieces["system_fold"] + "{{ end }}{{ .Content }}"
        system = ""
    else:
        system = '{{- if eq .Role "system" }}' + pieces["system_before"] + "{{ .Content }}" + pieces["system_after"] + "{{ end }}"
    return ("{{- range $i, $_ := .Messages }}" + system
            + '{{- if eq .Role "user" }}' + pieces["user_before"] + user + pieces["user_after"] + "{{ end }}"
            + '{{- if eq .Role "assistant" }}' + pieces["answer_before"] + "{{ .Content }}" + pieces["answer_after"] + "{{ end }}"
            + "{{- end }}" + pieces["header"])


def modelfile(chat: ChatFormat, from_file: str, adapter: str | None = None, system: str | None = None) -> str:
    # `$i` counts every message: a system message sits at 0, so the first user turn it folds into is 1
    pieces = template_pieces(chat)
    template = go_template(pieces).replace('"""', '\\"\\"\\"')
    lines = [f"FROM ./{from_file}"]
    if adapter:
        lines.append(f"ADAPTER ./{adapter}")
    lines.append(f'TEMPLATE """{template}"""')
    stops = sorted({chat.end_of_turn_text, *(t for t in [chat.tokenizer.eos_token] if t)})
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    # lawtune's default decoding: greedy, its repetition penalty (lawtune applies it to the answer's tokens
    # only; Ollama's to the last 64 tokens, prompt included: the nearest setting Ollama has)
    lines += ["PARAMETER temperature 0", f"PARAMETER repeat_penalty {DecodingPolicy().repetition_penalty}"]
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"
