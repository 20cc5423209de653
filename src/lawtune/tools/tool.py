"""A tool is a plain typed Python function; its JSON Schema and argument checking come from the signature.

    tool = Tool.from_function(severance_pay)
    tool.openai()                                           # {"type": "function", "function": {...}}
    outcome = run_tool_call([tool], "severance_pay", {"monthly_wage": 8000, "years": 3, "months": 5})
    outcome.ok, outcome.content                             # True, {"result": 28000, "formula": ..., ...}

pydantic builds one model per function from its signature (`Annotated[..., Field(description=, ge=)]` gives
each parameter its description and limits), so the schema the model sees and the checks that run are the
same thing. `run_tool_call` never raises: an unknown tool, arguments that fail the schema, a `ToolError`
from the function, any other exception and a timeout all become `{"error": "..."}` outcomes a model can read.
"""

from __future__ import annotations

import inspect
import json
import threading
import typing
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from lawtune.modeling.tool_format import call_name_and_arguments


NEEDS_KEY = "x-needs-one-of"
LABEL_KEY = "x-label"
SAID_KEY = "x-said-as"
REQUIRED_WHEN_SAID_KEY = "x-required-when-said"
ABOUT_KEY = "x-said-about"
ONLY_WITH_KEY = "x-only-with"


def labels(**names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Short Chinese labels of parameters whose English names hide what in a question they stand for (a boolean,
    which of three kinds of hours, which of several dates): `@labels(unlawful="违法解除时 true")`. The schema
    carries each as `x-label` and the compact tool line shows it after the type (`unlawful?: boolean（违法解除时
    true）`, the Gemma template, docs/tools.md): the full descriptions cost too many prompt tokens to show, and
    the measured tuned model left `unlawful` out on 违法解除 questions and put 平时 hours under `holiday_hours`."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__tool_labels__ = dict(names)  # type: ignore[attr-defined]
        return function

    return mark


def needs_one_of(*groups: tuple[str, ...] | list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare what a tool cannot compute without: at least one group of parameters given in full (e.g. a
    length of service: `("years",), ("months",), ("start_date", "end_date")`). The schema carries it as
    `x-needs-one-of` (the call grammar reads it: lawtune.tools.constrain.call_rules); the function itself still
    answers a call without them with a ToolError."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__tool_needs__ = [list(group) for group in groups]  # type: ignore[attr-defined]
        return function

    return mark


def said_as(**phrases: tuple[str, ...] | list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Booleans that stand for something the user says in so many words (`open_ended=("无固定期限",)`): the schema
    carries the phrases as `x-said-as`, and the call grammar (lawtune.tools.constrain.call_rules) offers the
    parameter only when a user turn holds one of them — as a figure parameter is offered only with a span of its
    kind. With `@needs_one_of` naming the boolean as a group of its own, a tool whose only other inputs are figures
    cannot be called on a boolean alone when the user said none of it (the tuned demo model called
    `probation_limits {"task_based": true}` on questions of every kind, docs/tools.md "Measured")."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__tool_said_as__ = {key: list(values) for key, values in phrases.items()}  # type: ignore[attr-defined]
        return function

    return mark


def required_when_said(**phrases: tuple[str, ...] | list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Parameters the user's words settle: when a user turn says one of the phrases, the call must give the parameter
    (lawtune.tools.constrain.call_rules; `DecodingPolicy.tool_said_required`). A boolean is then required and true
    (`unlawful=("违法解除", "违法辞退", …)`: the tuned demo model left `unlawful` out on 违法解除 questions and
    computed half the figure, docs/tools.md "Measured"); not said, it stays optional. A figure parameter (`x-figure`)
    is then required and takes the spans of its kind from the clauses that say it (`rest_day_hours=("周末", …)`:
    周末加班8小时 → `"8小时"`; the model put 平时 hours under rest-day hours). A phrase `A…B` matches A then B in one
    clause. The phrases are the statute's and people's words for the thing, never a generator's templates."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__tool_required_when_said__ = {key: list(values) for key, values in phrases.items()}  # type: ignore[attr-defined]
        return function

    return mark


def said_about(*phrases: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A tool callable only on a conversation whose user turns name its subject (`@said_about("试用")`: the
    probation limits). The schema carries the phrases as `x-said-about` (lawtune.tools.constrain.call_rules): the
    tuned demo model called probation_limits with the dates of a double-wage question that never spoke of a
    probation period (docs/tools.md "Measured")."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__tool_said_about__ = list(phrases)  # type: ignore[attr-defined]
        return function

    return mark


def only_with(**booleans: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A parameter that belongs to one case of the tool, the case a boolean names (`employment_end_date=
    "wage_arrears_during_employment"`: the arbitration clock runs from the end of employment only for wages owed
    while employed, 劳动争议调解仲裁法第二十七条第四款). The schema carries it as `x-only-with`; with the user's words
    read (`said_required`) the call grammar offers the parameter only when they settle that boolean true
    (`@required_when_said`), so a 离职 date in any other arbitration question is never sent to the tool as the end of
    employment (the tool would refuse it)."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__tool_only_with__ = dict(booleans)  # type: ignore[attr-defined]
        return function

    return mark


class ToolError(Exception):
    """Raised by a tool function for arguments that pass the schema but make no legal sense; the message is
    shown to the model as the error result."""


@dataclass
class ToolOutcome:
    ok: bool
    content: dict[str, Any]  # ok: {"result", "formula", "articles", ...}; else {"error": "..."}

    @classmethod
    def failure(cls, message: str) -> "ToolOutcome":
        return cls(ok=False, content={"error": message})

    def message_content(self) -> str:
        """Compact JSON for the `tool` message (Chinese kept readable)."""
        return json.dumps(self.content, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema object
    function: Callable[..., Any]
    arguments_model: type[BaseModel]

    @classmethod
    def from_function(cls, function: Callable[..., Any], name: str | None = None) -> "Tool":
        name = name or function.__name__
        model = _arguments_model(function, name)
        doc = inspect.getdoc(function) or ""
        description = doc.split("\n\n", 1)[0].replace("\n", "")
        parameters = _clean_schema(model.model_json_schema())
        needs = getattr(function, "__tool_needs__", None)
        if needs:
            unknown = sorted({key for group in needs for key in group} - set(parameters.get("properties", {})))
            if unknown:
                raise ValueError(f"{name}: needs_one_of names no parameter of the function: {', '.join(unknown)}")
            parameters[NEEDS_KEY] = needs
        for key, label in (getattr(function, "__tool_labels__", None) or {}).items():
            if key not in parameters.get("properties", {}):
                raise ValueError(f"{name}: labels names no parameter of the function: {key}")
            parameters["properties"][key][LABEL_KEY] = label
        for key, phrases in (getattr(function, "__tool_said_as__", None) or {}).items():
            if parameters.get("properties", {}).get(key, {}).get("type") != "boolean":
                raise ValueError(f"{name}: said_as names no boolean parameter of the function: {key}")
            if not phrases or not all(isinstance(phrase, str) and phrase for phrase in phrases):
                raise ValueError(f"{name}: said_as needs at least one non-empty phrase for {key}")
            parameters["properties"][key][SAID_KEY] = phrases
        about = getattr(function, "__tool_said_about__", None)
        if about is not None:
            if not about or not all(isinstance(phrase, str) and phrase for phrase in about):
                raise ValueError(f"{name}: said_about needs at least one non-empty phrase")
            parameters[ABOUT_KEY] = about
        for key, boolean in (getattr(function, "__tool_only_with__", None) or {}).items():
            properties = parameters.get("properties", {})
            if key not in properties or properties.get(boolean, {}).get("type") != "boolean":
                raise ValueError(f"{name}: only_with needs a parameter and a boolean parameter of the function: "
                                 f"{key}={boolean}")
            properties[key][ONLY_WITH_KEY] = boolean
        for key, phrases in (getattr(function, "__tool_required_when_said__", None) or {}).items():
            schema = parameters.get("properties", {}).get(key, {})
            if schema.get("type") != "boolean" and not schema.get("x-figure") and schema.get("format") != "date":
                raise ValueError(f"{name}: required_when_said names no boolean, figure or date parameter of the function: {key}")
            if not phrases or not all(isinstance(phrase, str) and phrase.strip("…") for phrase in phrases):
                raise ValueError(f"{name}: required_when_said needs at least one non-empty phrase for {key}")
            schema[REQUIRED_WHEN_SAID_KEY] = phrases
        return cls(name=name, description=description, parameters=parameters, function=function,
                   arguments_model=model)

    def openai(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the function, or ToolError naming each bad argument."""
        try:
            checked = self.arguments_model.model_validate(arguments)
        except ValidationError as error:
            raise ToolError(f"{self.name} 的参数有误：{_explain(error, self.parameters)}") from None
        return {key: getattr(checked, key) for key in type(checked).model_fields}


def _arguments_model(function: Callable[..., Any], name: str) -> type[BaseModel]:
    hints = typing.get_type_hints(function, include_extras=True)
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    return create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)


def _clean_schema(schema: Any) -> Any:
    """Drop pydantic's titles and turn `anyOf [X, null]` into X: a shorter prompt, the same meaning for a model
    (an optional argument is simply left out)."""
    if isinstance(schema, list):
        return [_clean_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned = {key: _clean_schema(value) for key, value in schema.items() if key != "title"}
    # a figure's schema set by WithJsonSchema (lawtune.tools.figures) keeps pydantic's own names of its limits
    for pydantic_name, json_name in (("gt", "exclusiveMinimum"), ("ge", "minimum")):
        if pydantic_name in cleaned:
            cleaned[json_name] = cleaned.pop(pydantic_name)
    if "default" in cleaned and cleaned["default"] is None:
        cleaned.pop("default")
    options = cleaned.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
        other = next(option for option in options if option != {"type": "null"})
        cleaned.pop("anyOf")
        if cleaned.get("default", 0) is None:
            cleaned.pop("default")
        cleaned = {**other, **cleaned}
    if "properties" in cleaned and cleaned.get("type") == "object":
        cleaned.setdefault("additionalProperties", False)
    return cleaned


def _explain(error: ValidationError, schema: dict[str, Any]) -> str:
    known = ", ".join(schema.get("properties", {}))
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        if item["type"] == "extra_forbidden":
            parts.append(f"未知参数 {where}（可用参数：{known}）")
        elif item["type"] == "missing":
            parts.append(f"缺少参数 {where}")
        else:
            parts.append(f"{where}={item.get('input')!r}: {item['msg']}")
    return "；".join(parts)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def run_tool_call(tools: list[Tool], name: str, arguments: dict[str, Any] | str | None,
                  timeout: float = 5.0) -> ToolOutcome:
    """Run one call and return its outcome; never raises (see the module docstring)."""
    tool = next((tool for tool in tools if tool.name == name), None)
    if tool is None:
        available = ", ".join(tool.name for tool in tools) or "（无）"
        return ToolOutcome.failure(f"没有名为 {name!r} 的工具；可用工具：{available}")
    try:
        _, arguments = call_name_and_arguments({"name": name, "arguments": arguments})
        kwargs = tool.validate(arguments)
    except (ValueError, ToolError) as error:
        return ToolOutcome.failure(str(error))

    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = tool.function(**kwargs)
        except BaseException as error:  # noqa: BLE001 — every failure becomes an error result
            box["error"] = error

    # A daemon thread with a deadline: a hung tool cannot hold the request (the thread is abandoned).
    worker = threading.Thread(target=work, name=f"tool-{name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return ToolOutcome.failure(f"工具 {name} 超时（超过 {timeout:g} 秒未返回）")
    if "error" in box:
        error = box["error"]
        if isinstance(error, ToolError):
            return ToolOutcome.failure(str(error))
        return ToolOutcome.failure(f"工具 {name} 运行出错：{type(error).__name__}: {error}")
    value = box.get("value")
    try:
        content = _json_safe(value if isinstance(value, dict) else {"result": value})
    except (TypeError, ValueError) as error:
        return ToolOutcome.failure(f"工具 {name} 的结果无法转成 JSON：{error}")
    return ToolOutcome(ok=True, content=content)
