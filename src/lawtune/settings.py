"""One pattern for every command's settings: a typed class holds each option's default, limits and help, the
command's flags are made from its fields, and a test fails when the two drift apart.

    class PreparePolicy(BaseModel):                                   # the schema (lawtune.data.policy)
        seed: int = Field(0, description="salt of the split hash")

    def prepare(seed: int = option(PreparePolicy, "seed")): ...       # --seed, default 0, help from the field
    policy = validate(PreparePolicy, {"seed": seed}, "prepare", as_flags=True)   # errors name --seed
    assert cli_drift(prepare, PreparePolicy, cli_only={"sources", "out"}) == []  # tests/test_cli_settings.py

A settings source is a pydantic model or dataclass (help from `Field(description=...)`, or a plain dataclass's
`field(metadata={"help": ...})`), or a function, whose keyword parameters are its settings (litgpt's "the
signature is the config"). Nested settings are named by dotted paths: `option(ServeSettings,
"gateway.queue_size")` is `--queue-size` with `GatewaySettings.queue_size`'s default and help, and
`from_options(ServeSettings, values, "serve")` puts a `queue_size` value at `gateway.queue_size`. Options that
several commands share are written once as a function and spliced into each command with `options_of`.
Only typer and pydantic are imported here, so area CLIs can build their options at import time and
`lawtune --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any

import typer
from pydantic import BaseModel, ValidationError

from lawtune.errors import LawtuneError


def flag(name: str) -> str:
    """The flag of a settings field: `dev_ratio` → `--dev-ratio` (`gateway.queue_size` → `--queue-size`)."""
    return "--" + name.rpartition(".")[2].replace("_", "-")


def _is_settings(kind: Any) -> bool:
    return isinstance(kind, type) and (issubclass(kind, BaseModel) or dataclasses.is_dataclass(kind))


def _fields(source: Any) -> dict[str, tuple[Any, Any, str | None]]:
    """name → (default or `inspect.Parameter.empty`, type, help) for each setting of `source`."""
    if isinstance(source, type) and issubclass(source, BaseModel):
        return {name: (info.get_default(call_default_factory=True) if not info.is_required() else inspect.Parameter.empty,
                       info.annotation, info.description) for name, info in source.model_fields.items()}
    if hasattr(source, "__pydantic_fields__") and dataclasses.is_dataclass(source):  # a pydantic dataclass
        return {name: (info.get_default(call_default_factory=True) if not info.is_required() else inspect.Parameter.empty,
                       info.annotation, info.description) for name, info in source.__pydantic_fields__.items()}
    if dataclasses.is_dataclass(source):
        hints = typing.get_type_hints(source)
        return {f.name: (f.default if f.default is not dataclasses.MISSING else
                         f.default_factory() if f.default_factory is not dataclasses.MISSING else inspect.Parameter.empty,
                         hints.get(f.name), f.metadata.get("help")) for f in dataclasses.fields(source)}
    return {name: (p.default, None, None) for name, p in inspect.signature(source).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def defaults(source: Any) -> dict[str, Any]:
    """Every setting of `source` with its default (`inspect.Parameter.empty` when it has none)."""
    return {name: default for name, (default, _, _) in _fields(source).items()}


def leaves(source: Any) -> dict[str, Any]:
    """Like `defaults`, with nested settings opened into dotted paths (`gateway.queue_size`); a nested
    setting's default is its own class's default (what an option for it shows)."""
    found: dict[str, Any] = {}
    for name, (default, kind, _) in _fields(source).items():
        if _is_settings(kind):
            found.update({f"{name}.{leaf}": value for leaf, value in leaves(kind).items()})
        else:
            found[name] = default
    return found


def _field(source: Any, path: str) -> tuple[Any, Any, str | None]:
    head, _, rest = path.partition(".")
    entry = _fields(source)[head]
    return _field(entry[1], rest) if rest else entry


def _find(paths: Iterable[str], name: str) -> str | None:
    """`name` among dotted setting paths: itself, else the one path whose last part it is (None: none or several)."""
    paths = list(paths)
    if name in paths:
        return name
    found = [path for path in paths if path.rpartition(".")[2] == name]
    return found[0] if len(found) == 1 else None


def locate(source: Any, name: str) -> str:
    """The dotted path of a setting: `name` itself when it is one, else the one nested leaf called `name`."""
    path = name if name in _fields(source) else _find(leaves(source), name)
    if path is None:
        raise KeyError(f"{name!r} names no setting of {source.__name__}, or several")
    return path


def field_help(source: Any, name: str) -> str | None:
    """The help text of one setting (a dotted path for a nested one)."""
    return _field(source, locate(source, name))[2]


def option(source: Any, name: str, *param_decls: str, default: Any = ..., help: str | None = None, **kwargs: Any) -> Any:
    """A typer option for the setting `name` (a dotted path for a nested one) of `source`: its flag, its default
    and its help, unless given."""
    path = locate(source, name)
    value = _field(source, path)[0] if default is ... else default
    return typer.Option(value, *(param_decls or (flag(path),)), help=help or _field(source, path)[2], **kwargs)


def validate(settings: Any, values: dict[str, Any], command: str, *, as_flags: bool = False,
             flags: dict[str, str] | None = None) -> Any:
    """`settings(**values)`; every problem in one LawtuneError, naming the options (or their flags: `flags`
    maps a dotted setting path to a flag whose name is not the setting's own)."""
    try:
        return settings(**values)
    except ValidationError as error:
        raise LawtuneError(f"invalid {command} options: " + "; ".join(problems(error, settings, as_flags, flags))) from None


def from_options(settings: Any, values: dict[str, Any], command: str, *, renamed: dict[str, str] | None = None,
                 flags: dict[str, str] | None = None) -> Any:
    """A command's option values (by parameter name) → `settings`, nested ones at their dotted paths; a value
    that is None or [] leaves the setting's own default; a bad value is one error naming its flag.
    `renamed` maps a parameter to the setting it fills when their names differ, `flags` a parameter to its flag
    when that is not `--the-parameter` (as in `cli_drift`)."""
    renamed, flags = renamed or {}, flags or {}
    nested: dict[str, Any] = {}
    shown: dict[str, str] = {}
    for name, value in values.items():
        path = locate(settings, renamed.get(name, name))
        shown[path] = flags.get(name, flag(name))
        if value is None or value == []:
            continue
        *parents, leaf = path.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return validate(settings, nested, command, as_flags=True, flags=shown)


def problems(error: ValidationError, settings: Any, as_flags: bool = False,
             flags: dict[str, str] | None = None) -> list[str]:
    """One phrase per problem; an unknown name comes with the nearest valid one."""
    flags, paths = flags or {}, leaves(settings)

    def shown(name: str) -> str:
        if not as_flags:
            return repr(name)
        setting = next((path for path in paths if name == path or name.startswith(path + ".")), name)
        return flags.get(setting, flag(setting))  # `mcq.0` (a list's first item) is --mcq's

    found = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            near = nearest(name, paths)
            found.append(f"unknown option {shown(name)}" + (f" (did you mean {shown(near)}?)" if near else ""))
        elif not item["loc"] or name not in paths and any(path.startswith(name + ".") for path in paths):
            found.append(item["msg"].removeprefix("Value error, "))  # a cross-field check: its message names the values
        else:
            message = item["msg"].removeprefix("Value error, ")
            found.append(f"{shown(name) if as_flags else name}: {message} (got {item.get('input')!r})")
    return found


def nearest(name: str, valid: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The valid name closest to a misspelt one (for "did you mean ...?"), or None."""
    near = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=cutoff)
    return near[0] if near else None


def options_of(param: str, group: Callable[..., Any]) -> Callable[[Callable], Callable]:
    """A decorator: the command's parameter `param` becomes `group`'s parameters on the command line, and the
    command gets `group(**their values)` in it. Typer has no option groups; this writes shared options once:

        def decoding_options(repetition_penalty: float = option(DecodingPolicy, ...), ...) -> DecodingPolicy: ...

        @options_of("decoding", decoding_options)
        def eval_command(model: str = typer.Argument(...), decoding: DecodingPolicy = None): ...
    """
    group_signature = inspect.signature(group)
    group_hints = typing.get_type_hints(group)

    def splice(command: Callable) -> Callable:
        hints = typing.get_type_hints(command)
        params: list[inspect.Parameter] = []
        for each in inspect.signature(command).parameters.values():
            if each.name == param:
                params += [p.replace(annotation=group_hints.get(p.name, p.annotation)) for p in group_signature.parameters.values()]
            else:
                params.append(each.replace(annotation=hints.get(each.name, each.annotation)))

        @functools.wraps(command)
        def spliced(**values: Any) -> Any:
            made = group(**{name: values.pop(name) for name in group_signature.parameters})
            return command(**values, **{param: made})

        spliced.__signature__ = inspect.Signature(params)  # what typer reads: the group's options in place of `param`
        spliced.__annotations__ = {p.name: p.annotation for p in params}
        return spliced

    return splice


def cli_drift(command: Callable, *sources: Any, cli_only: Iterable[str] = (), not_on_cli: Iterable[str] = (),
              renamed: dict[str, str] | None = None, own_default: Iterable[str] = (),
              flags: dict[str, str] | None = None) -> list[str]:
    """Where a typer command and its settings disagree; [] when they agree.

    Every setting of `sources` (but `not_on_cli`; nested ones by their dotted paths) must be a parameter of
    `command` under its own name (a nested one: its last part; `renamed` maps a parameter to the setting it sets),
    spelled `--name-with-dashes` (an option; `flags` maps a parameter to another spelling) or taken as an argument, with the setting's default (but
    `own_default`: a CLI that derives the value, e.g. None = "pick one"); every parameter but `cli_only` must be a
    setting."""
    from typer.main import get_command

    app = typer.Typer(add_completion=False)
    app.command()(command)
    params = {param.name: param for param in get_command(app).params}
    renamed, flags = renamed or {}, flags or {}
    settings: dict[str, Any] = {}
    for source in sources:
        settings.update(leaves(source))
    skip, cli_only, own_default = set(not_on_cli), set(cli_only), set(own_default)

    found, used = [], set()
    for name, param in params.items():
        if name in cli_only:
            continue
        setting = _find(settings, renamed.get(name, name))
        if setting is None:
            found.append(f"{name}: a CLI parameter with no setting")
            continue
        used.add(setting)
        spelled = flags.get(name, flag(name))
        if param.param_type_name == "option" and spelled not in param.opts:
            found.append(f"{name}: flag {param.opts} is not {spelled}")
        default = settings[setting]
        if setting not in own_default and name not in own_default and default is not inspect.Parameter.empty \
                and param.default != default:
            found.append(f"{name}: CLI default {param.default!r} is not the setting's {default!r}")
    found += [f"{name}: a setting with no CLI parameter" for name in settings
              if name not in used and name not in skip and name.partition(".")[0] not in skip]
    return found
