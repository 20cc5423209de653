"""`lawtune serve`'s options and ServeSettings stay one thing: every option fills a settings field with the
field's own default, every field has an option (or a stated reason not to), and errors name real flags.

    .venv/bin/pytest tests/serving/test_serve_cli.py -q
"""

from __future__ import annotations

import dataclasses

import click
import pytest
import typer

from lawtune.errors import LawtuneError
from lawtune.serving import cli
from lawtune.serving.gateway.settings import GatewaySettings
from lawtune.serving.settings import ServeSettings


def _serve_command() -> click.Command:
    app = typer.Typer()
    app.command("serve")(cli.serve)
    app.command("other")(lambda: None)  # two commands: typer keeps `serve` as a subcommand
    return typer.main.get_command(app).commands["serve"]


def _settings_fields() -> set[str]:
    from lawtune.modeling.decoding import DecodingPolicy

    fields = set(ServeSettings.model_fields)
    fields |= {f"gateway.{name}" for name in GatewaySettings.model_fields}
    fields |= {f"decoding.{field.name}" for field in dataclasses.fields(DecodingPolicy)}
    return fields


def test_every_option_fills_a_settings_field_and_every_field_has_an_option():
    params = {param.name for param in _serve_command().params}
    assert params - set(cli.FLAG_FIELDS) == cli.CLI_ONLY, "a serve option that fills no settings field"
    assert set(cli.FLAG_FIELDS) <= params, "FLAG_FIELDS names an option serve does not have"
    fields = _settings_fields()
    assert set(cli.FLAG_FIELDS.values()) <= fields, "FLAG_FIELDS names a field the settings do not have"
    missing = fields - set(cli.FLAG_FIELDS.values()) - set(cli.NOT_FLAGS)
    assert not missing, f"settings fields without a serve option (add one, or say why in NOT_FLAGS): {missing}"


def test_option_defaults_are_the_settings_defaults():
    for param in _serve_command().params:
        if param.name in cli.CLI_ONLY or param.name in ("served_model_name", "lora_modules", "cors_origin"):
            continue  # lists: no value means the settings' empty default
        if param.envvar and param.default is None:
            continue  # secrets come from the environment
        assert param.default == cli.default(cli.FLAG_FIELDS[param.name]), param.name


def test_no_flags_give_the_settings_defaults():
    settings = cli.settings_from_flags({"model": "runs/x", "open_access": True})
    expected = ServeSettings(model="runs/x", gateway=GatewaySettings(open_access=True))
    assert settings == expected


@pytest.mark.parametrize("values, flag", [
    ({"timeout": 0}, "--timeout"),
    ({"queue_size": -1}, "--queue-size"),
    ({"breaker_cooldown": 0}, "--breaker-cooldown"),
    ({"rpm": 0}, "--rpm"),
    ({"dtype": "int3"}, "--dtype"),
    ({"repetition_penalty": 0.0}, "--repetition-penalty"),
    ({"sse_keepalive": -1}, "--sse-keepalive"),
])
def test_errors_name_the_real_flag(values, flag):
    with pytest.raises(LawtuneError) as bad:
        cli.settings_from_flags({"model": "runs/x", "open_access": True, **values})
    message = str(bad.value)
    assert flag in message, message
    real = {opt for param in _serve_command().params for opt in param.opts}
    named = {word.rstrip(":,") for word in message.split() if word.startswith("--")}
    assert named <= real, f"the message names flags serve does not have: {named - real}"


def test_lora_modules_are_name_equals_run():
    assert cli._lora_modules(["a=runs/a", "b=runs/b"]) == {"a": "runs/a", "b": "runs/b"}
    with pytest.raises(LawtuneError, match="NAME=RUN"):
        cli._lora_modules(["runs/a"])
