"""One pattern for every command's settings: a typed class holds each option's default, limits and help, the
command's flags are made from its fields, and a test fails when the two drift apart.

    class PreparePolicy(BaseModel):                                   # the schema (lawtune.data.policy)
        seed: int = Field(0, description="salt of the split hash")

    def prepare(seed: int = option(PreparePolicy, "seed")): ...       # --seed, default 0, help from the field
    policy = validate(PreparePolicy, {"seed": seed}, "prepare", as_flags=True)   # errors name --seed
    assert cli_drift(prepare, PreparePolicy, cli_only={"sources", "out"}) == []  # tests/test_cli_settings.py

A settings source is a pydantic model, a dataclass (help from `field(metadata={"help": ...})`) or a function,
whose keyword parameters are its settings (litgpt's "the signature is the config"). Only typer and pydantic
are imported here, so area CLIs can build their options at import time and `lawtune --help` stays fast.
`lawtune serve` can adopt it the same way: `option(ServeSettings, "port")` and a `cli_drift` test.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import typer
from pydantic import BaseModel, ValidationError

from lawtune.errors import LawtuneError


def flag(name: str) -> str:
    """The flag of a settings field: `dev_ratio` → `--dev-ratio`."""
    return "--" + name.replace("_", "-")


def defaults(source: Any) -> dict[str, Any]:
    """Every setting of `source` with its default (`inspect.Parameter.empty` when it has none)."""
    if isinstance(source, type) and issubclass(source, BaseModel):
        return {name: (info.get_default(call_default_factory=True) if not info.is_required() else inspect.Parameter.empty)
                for name, info in source.model_fields.items()}
    if dataclasses.is_dataclass(source):
        return {f.name: (f.default if f.default is not dataclasses.MISSING else
                         f.default_factory() if f.default_factory is not dataclasses.MISSING else inspect.Parameter.empty)
                for f in dataclasses.fields(source)}
    return {name: p.default for name, p in inspect.signature(source).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def field_help(source: Any, name: str) -> str | None:
    """The help text of one setting: a pydantic Field's description or a dataclass field's metadata["help"]."""
    if isinstance(source, type) and issubclass(source, BaseModel):
        return source.model_fields[name].description
    if dataclasses.is_dataclass(source):
        return next(f.metadata.get("help") for f in dataclasses.fields(source) if f.name == name)
    return None


def option(source: Any, name: str, *param_decls: str, default: Any = ..., help: str | None = None, **kwargs: Any) -> Any:
    """A typer option for the setting `name` of `source`: its flag, its default and its help, unless given."""
    value = defaults(source)[name] if default is ... else default
    return typer.Option(value, *(param_decls or (flag(name),)), help=help or field_help(source, name), **kwargs)


def validate(settings: type[BaseModel], values: dict[str, Any], command: str, *, as_flags: bool = False) -> Any:
    """`settings(**values)`; every problem in one LawtuneError, naming the options (or their flags)."""
    try:
        return settings(**values)
    except ValidationError as error:
        raise LawtuneError(f"invalid {command} options: " + "; ".join(problems(error, settings, as_flags))) from None


def problems(error: ValidationError, settings: type[BaseModel], as_flags: bool = False) -> list[str]:
    """One phrase per problem; an unknown name comes with the nearest valid one."""
    shown = flag if as_flags else repr
    found = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            near = difflib.get_close_matches(name, settings.model_fields, n=1)
            found.append(f"unknown option {shown(name)}" + (f" (did you mean {shown(near[0])}?)" if near else ""))
        elif not item["loc"]:  # a cross-field check: its message already names the values
            found.append(item["msg"].removeprefix("Value error, "))
        else:
            found.append(f"{flag(name) if as_flags else name}: {item['msg']} (got {item.get('input')!r})")
    return found


def cli_drift(command: Callable, *sources: Any, cli_only: Iterable[str] = (), not_on_cli: Iterable[str] = (),
              renamed: dict[str, str] | None = None, own_default: Iterable[str] = ()) -> list[str]:
    """Where a typer command and its settings disagree; [] when they agree.

    Every setting of `sources` (but `not_on_cli`) must be a parameter of `command` under its own name
    (`renamed` maps a parameter to the setting it sets), spelled `--name-with-dashes` (an option) or taken as
    an argument, with the setting's default (but `own_default`: a CLI that derives the value, e.g. None =
    "pick one"); every parameter but `cli_only` must be a setting."""
    from typer.main import get_command

    app = typer.Typer(add_completion=False)
    app.command()(command)
    params = {param.name: param for param in get_command(app).params}
    renamed = renamed or {}
    settings: dict[str, Any] = {}
    for source in sources:
        settings.update(defaults(source))
    skip, cli_only, own_default = set(not_on_cli), set(cli_only), set(own_default)
    found = []
    for name, param in params.items():
        setting = renamed.get(name, name)
        if name in cli_only:
            continue
        if setting not in settings:
            found.append(f"{name}: a CLI parameter with no setting")
            continue
        if param.param_type_name == "option" and flag(name) not in param.opts:
            found.append(f"{name}: flag {param.opts} is not {flag(name)}")
        default = settings[setting]
        if setting not in own_default and default is not inspect.Parameter.empty and param.default != default:
            found.append(f"{name}: CLI default {param.default!r} is not the setting's {default!r}")
    wanted = {renamed.get(name, name) for name in params}
    found += [f"{name}: a setting with no CLI parameter" for name in settings if name not in wanted and name not in skip]
    return found
