"""The decoding flags every generating command shares (eval, compare, infer, chat, serve), written once.

    @options_of("decoding", decoding_options)       # lawtune.settings.options_of
    def infer_command(..., decoding: DecodingPolicy = None): ...   # the command gets the DecodingPolicy

    lawtune infer runs/demo -p "…" --repetition-penalty 1.2 --no-repetition-stop
    lawtune serve runs/demo --no-repetition-control

Their defaults and help are `DecodingPolicy`'s fields. A penalty flag left out means the policy's default
(its value is None here, so `--no-repetition-control` can tell it apart from one given on purpose).
Only typer and pydantic are imported (the CLIs build these options at import time).
"""

from __future__ import annotations

from typing import Optional

import typer

from lawtune.modeling.decoding import DecodingPolicy
from lawtune.settings import defaults, field_help, option, validate

OFF = {"repetition_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0, "no_repeat_ngram_size": 0}
_DEFAULT = defaults(DecodingPolicy)


def _penalty(name: str) -> typer.models.OptionInfo:
    """A penalty's option: default None (= the policy's), the policy's default said in the help."""
    return option(DecodingPolicy, name, default=None, help=f"{field_help(DecodingPolicy, name)} Default {_DEFAULT[name]}.")


def decoding_options(
    repetition_penalty: Optional[float] = _penalty("repetition_penalty"),
    frequency_penalty: Optional[float] = _penalty("frequency_penalty"),
    presence_penalty: Optional[float] = _penalty("presence_penalty"),
    no_repeat_ngram_size: Optional[int] = _penalty("no_repeat_ngram_size"),
    no_repetition_control: bool = typer.Option(False, "--no-repetition-control",
                                               help="Switch every penalty above off (plain greedy logits)."),
    repetition_stop: bool = option(DecodingPolicy, "repetition_stop", "--repetition-stop/--no-repetition-stop"),
    tool_figures: bool = option(DecodingPolicy, "tool_figures", "--tool-figures/--no-tool-figures"),
    tool_result_figure: bool = option(DecodingPolicy, "tool_result_figure",
                                      "--tool-result-figure/--no-tool-result-figure"),
    tool_said_required: bool = option(DecodingPolicy, "tool_said_required",
                                      "--tool-said-required/--no-tool-said-required"),
) -> DecodingPolicy:
    """The decoding flags' values → one DecodingPolicy; a bad value or a contradiction is one LawtuneError."""
    from lawtune.errors import LawtuneError

    values = dict(repetition_penalty=repetition_penalty, frequency_penalty=frequency_penalty,
                  presence_penalty=presence_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
    given = {name: value for name, value in values.items() if value is not None}
    if no_repetition_control and given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise LawtuneError(f"--no-repetition-control switches every penalty off; drop it or drop {flags}")
    return validate(DecodingPolicy, {**(OFF if no_repetition_control else given), "repetition_stop": repetition_stop,
                                      "tool_figures": tool_figures, "tool_result_figure": tool_result_figure,
                                      "tool_said_required": tool_said_required},
                    "decoding", as_flags=True)
