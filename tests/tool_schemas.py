"""Reading the call grammar's restricted schemas in tests (`lawtune.tools.constrain.call_rules`)."""

from __future__ import annotations


def ways(parameters: dict) -> list[dict]:
    """The object schemas a call may follow: one, or the `anyOf` ways of a length in years and months."""
    return parameters.get("anyOf", [parameters])


def fits(schema: dict, arguments: dict) -> bool:
    """Whether a call's arguments satisfy one object schema of the call grammar: only its keys, each value one of its
    enum (or its const), every required key given."""
    properties = schema["properties"]
    return all(key in properties and value in properties[key].get("enum", [properties[key].get("const", value)])
               for key, value in arguments.items()) and set(schema.get("required", [])) <= set(arguments)
