"""Every command's flags are tied to its typed settings: a flag and a field cannot drift apart unnoticed.

    .venv/bin/pytest tests/test_cli_settings.py -q

A new option goes into the settings class (default, limits, help) and its flag is made with
`lawtune.settings.option`; these tests fail when one side has it and the other does not, or the defaults differ.
"""

from __future__ import annotations

from typing import Optional

import pytest
import typer
from typer.testing import CliRunner

from lawtune.cli import app
from lawtune.data.cli import prepare
from lawtune.data.policy import PreparePolicy, RagTrainingOptions
from lawtune.evaluation.cli import chat_command, compare_command, eval_command, infer_command
from lawtune.evaluation.gate import Gate
from lawtune.evaluation.generation import GenerationSettings
from lawtune.errors import LawtuneError
from lawtune.evaluation.settings import EvalOptions
from lawtune.modeling.decoding import DecodingPolicy
from lawtune.serving import cli as serving_cli
from lawtune.serving.gateway.settings import GatewaySettings
from lawtune.serving.settings import ServeSettings
from lawtune.settings import cli_drift, defaults, option, options_of
from lawtune.training.cli import train_command

# decoding flags left out mean "the policy's default": their CLI value is None, the policy fills it in
PENALTIES = {"repetition_penalty", "frequency_penalty", "presence_penalty", "no_repeat_ngram_size"}
SAMPLING = {"do_sample", "temperature", "top_p", "seed"}
COMMAND_ONLY = {"no_mcq", "no_repetition_control"}  # switches that set other settings, not settings of their own


def test_prepare_flags_are_the_policy_fields():
    from lawtune.kb.cli import rag_training_options

    assert cli_drift(options_of("rag", rag_training_options)(prepare), PreparePolicy, RagTrainingOptions,
                     cli_only={"sources", "out"}) == []


def test_eval_and_compare_flags_are_their_settings_fields():
    shared = dict(own_default={"max_input_length", *PENALTIES}, not_on_cli={"decoding", *SAMPLING})
    assert cli_drift(eval_command, EvalOptions, GenerationSettings, DecodingPolicy,
                     cli_only={"model", "data", "out", *COMMAND_ONLY}, **shared) == []
    assert cli_drift(compare_command, EvalOptions, GenerationSettings, DecodingPolicy, Gate,
                     cli_only={"base", "run", "data", "out", *COMMAND_ONLY},
                     renamed={"min_ended": "min_ended_pct", "max_looping": "max_loops_pct"},
                     own_default=shared["own_default"], not_on_cli={"decoding", "base_only", *SAMPLING}) == []


@pytest.mark.parametrize("command, cli_only", [(infer_command, {"model", "prompt", "system"}), (chat_command, {"model", "system"})])
def test_infer_and_chat_flags_are_their_settings_fields(command, cli_only):
    # one answer at a time with a 256-token budget; the eval-only measurements are not theirs; --tools and
    # --tool-rounds build the agent (lawtune.tools.agent.Agent), no generation setting
    assert cli_drift(command, EvalOptions, GenerationSettings, DecodingPolicy,
                     cli_only={*cli_only, "no_repetition_control", "tools", "tool_rounds"},
                     renamed={"sample": "do_sample"}, own_default={"max_new_tokens", *PENALTIES},
                     not_on_cli={"decoding", "batch_size", "max_input_length", "max_output_length", "mcq", "mcq_limit",
                                 "limit", "check_kb", "tool_data", "tools", "tool_limit"}) == []


def test_serve_flags_are_the_serve_settings_fields():
    # nested settings by their dotted paths (gateway.queue_size is --queue-size); the lists' None = no value given
    assert cli_drift(serving_cli.serve, ServeSettings, cli_only={*serving_cli.CLI_ONLY, "no_repetition_control"},
                     renamed=serving_cli.RENAMED, flags=serving_cli.FLAGS, not_on_cli=serving_cli.NOT_OPTIONS,
                     own_default={"served_model_name", "lora_modules", "cors_origins", *PENALTIES}) == []


def test_serve_without_flags_gives_the_settings_defaults():
    settings = serving_cli.settings_from_options({"model": "runs/x", "open_access": True})
    assert settings == ServeSettings(model="runs/x", gateway=GatewaySettings(open_access=True))


@pytest.mark.parametrize("values, flag", [
    ({"timeout": 0}, "--timeout"),
    ({"queue_size": -1}, "--queue-size"),
    ({"breaker_cooldown": 0}, "--breaker-cooldown"),
    ({"rpm": 0}, "--rpm"),
    ({"dtype": "int3"}, "--dtype"),
    ({"sse_keepalive": -1}, "--sse-keepalive"),
])
def test_serve_errors_name_the_real_flag(values, flag):
    with pytest.raises(LawtuneError) as bad:
        serving_cli.settings_from_options({"model": "runs/x", "open_access": True, **values})
    message = str(bad.value)
    assert flag in message, message
    app = typer.Typer()
    app.command("serve")(serving_cli.serve)
    app.command("other")(lambda: None)  # two commands: typer keeps `serve` as a subcommand
    real = {opt for param in typer.main.get_command(app).commands["serve"].params for opt in param.opts}
    named = {word.rstrip(":,") for word in message.split() if word.startswith("--")}
    assert named <= real, f"the message names flags serve does not have: {named - real}"


def test_serve_decoding_errors_name_the_flag():
    result = CliRunner().invoke(app, ["serve", "runs/x", "--open", "--repetition-penalty", "0"])
    assert result.exit_code != 0 and "--repetition-penalty: Input should be greater than 0" in str(result.exception)


def test_train_flags_are_the_arguments_of_train_run():
    from lawtune.training.train import run

    assert cli_drift(train_command, run, renamed={"config": "config_path"}, own_default={"overrides"}) == []


def test_library_entry_points_take_the_settings_objects():
    import inspect

    from lawtune.evaluation.compare import run as compare_run
    from lawtune.evaluation.evaluate import run as evaluate_run

    for function in (evaluate_run, compare_run):  # one EvalOptions and one GenerationSettings, no copies of fields
        keywords = {name for name, param in inspect.signature(function).parameters.items() if param.kind == param.KEYWORD_ONLY}
        assert {"options", "settings"} <= keywords and not keywords & set(defaults(EvalOptions)), function.__module__


@pytest.mark.parametrize("area, command, function, options", [
    ("export.cli", "export_command", "lawtune.export.export:run",
     dict(renamed={"to": "fmt", "out": "out_dir"}, cli_only={"run_dir"}, not_on_cli={"run_dir", "say"})),
    ("kb.cli", "build", "lawtune.kb.build:build",
     dict(cli_only={"bundled", "force"}, not_on_cli={"progress", "train_progress", "phases"}, own_default={"sources", "out"})),
    ("tools.cli", "generate", "lawtune.tools.generate:run",
     dict(renamed={"out": "out_dir", "qa": "qa_dir"}, own_default={"out"})),
    ("modeling.cli", "import_command", "lawtune.modeling.importer:import_model", {}),
    ("serving.gateway.cli", "add", "lawtune.serving.gateway.keys:add_key",
     dict(renamed={"keys_file": "path", "rpm": "requests_per_minute", "tpm": "tokens_per_minute"}, own_default={"keys_file", "name"})),
])
def test_library_commands_flags_are_the_arguments_of_their_function(area, command, function, options):
    """Commands without a settings class: the signature of the function they call is the config (litgpt)."""
    import importlib

    module, _, name = function.partition(":")
    target = getattr(importlib.import_module(module), name)
    assert cli_drift(getattr(importlib.import_module(f"lawtune.{area}"), command), target, **options) == []


def test_every_training_config_key_is_an_override():
    from pydantic import BaseModel

    from lawtune.training.config import TrainConfig, apply_override, validate_config

    def leaves(model, prefix=""):
        for name, info in model.model_fields.items():
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                yield from leaves(info.annotation, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", info

    data = {"data_config": {"train_file": "train.jsonl"}}
    for key, info in leaves(TrainConfig):
        if not info.is_required() and isinstance(info.default, (int, float, str)) and not isinstance(info.default, bool):
            apply_override(data, f"{key}={info.default}")
    validate_config(data)  # every key the schema has is accepted as a dotted override


def test_drift_is_caught():
    from pydantic import BaseModel, Field

    class Settings(BaseModel):
        steps: int = Field(3, description="steps")
        name: str = "x"

    def drifted(steps: int = typer.Option(4, "--steps"), extra: Optional[str] = typer.Option(None, "--extra")) -> None: ...

    def made(steps: int = option(Settings, "steps"), name: str = option(Settings, "name")) -> None: ...

    assert cli_drift(drifted, Settings) == ["steps: CLI default 4 is not the setting's 3", "extra: a CLI parameter with no setting",
                                            "name: a setting with no CLI parameter"]
    assert cli_drift(made, Settings) == []


def test_settings_errors_name_the_flags(tmp_path):
    result = CliRunner().invoke(app, ["prepare", str(tmp_path / "x.csv"), "-o", str(tmp_path), "--dev-ratio", "2"])
    assert result.exit_code != 0 and "--dev-ratio: Input should be less than 1" in str(result.exception)


def test_serve_lora_modules_are_name_equals_run():
    assert serving_cli._lora_modules(["a=runs/a", "b=runs/b"]) == {"a": "runs/a", "b": "runs/b"}
    with pytest.raises(LawtuneError, match="NAME=RUN"):
        serving_cli._lora_modules(["runs/a"])
