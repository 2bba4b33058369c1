"""A tool's parameters as data, so an edit can be checked where the tool is not imported.

Stored with each review item: ``{"params": {name: {"type": T, "required": bool,
"nullable": bool}}, "extra": bool}`` where T is str, int, float, bool, list, dict or any.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from .._errors import InvalidRequest
from .._values import check

_SIMPLE = {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict"}


def _type_name(annotation: Any) -> tuple[str, bool]:
    """(type, nullable) for an annotation; anything unusual is 'any'."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return "any", True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        if len(members) == 1:
            name, _ = _type_name(members[0])
            return name, nullable
        return "any", nullable
    if origin is not None:
        annotation = origin
    return _SIMPLE.get(annotation, "any"), False


def describe(fn: Callable[..., Any], skip_first: bool) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):  # unresolvable forward references: fall back to 'any'
        hints = {}
    params: dict[str, Any] = {}
    extra = False
    for i, (name, p) in enumerate(inspect.signature(fn).parameters.items()):
        if i == 0 and skip_first:
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            extra = True
            continue
        type_name, nullable = _type_name(hints.get(name, p.annotation))
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            type_name = "list"
        params[name] = {
            "type": type_name,
            "required": p.default is inspect.Parameter.empty
            and p.kind is not inspect.Parameter.VAR_POSITIONAL,
            "nullable": nullable or p.default is None,
        }
    return {"params": params, "extra": extra}


_JSON_TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
}


def from_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The parameters a JSON Schema object declares (an MCP tool's ``inputSchema``, a
    framework tool's argument schema), in the form ``describe`` gives a function's.

    Other parameters are allowed only when the schema says so outright
    (``additionalProperties: true`` or a schema): a reviewer's misspelled edit is refused
    where JSON Schema's lenient default would let it through."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise InvalidRequest("a tool's schema is a JSON Schema object ({'type': 'object', ...})")
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    params: dict[str, Any] = {}
    for name, prop in properties.items():
        type_name, nullable = _json_type(prop if isinstance(prop, dict) else {})
        params[str(name)] = {
            "type": type_name,
            "required": name in required,
            "nullable": nullable or name not in required,
        }
    extra = schema.get("additionalProperties", False)
    return {"params": params, "extra": extra is True or isinstance(extra, dict)}


def _json_type(prop: dict[str, Any]) -> tuple[str, bool]:
    """(type, nullable) of one property; unions of several types are 'any'."""
    declared = prop.get("type")
    if declared is None:
        options = prop.get("anyOf") or prop.get("oneOf")
        if isinstance(options, list):
            kinds = [o.get("type") for o in options if isinstance(o, dict)]
            nullable = "null" in kinds
            rest = [k for k in kinds if k != "null"]
            if len(rest) == 1 and isinstance(rest[0], str):
                return _JSON_TYPES.get(rest[0], "any"), nullable
            return "any", nullable
        return "any", True
    if isinstance(declared, list):
        nullable = "null" in declared
        rest = [k for k in declared if k != "null"]
        if len(rest) == 1 and isinstance(rest[0], str):
            return _JSON_TYPES.get(rest[0], "any"), nullable
        return "any", nullable
    if not isinstance(declared, str):
        return "any", True
    return _JSON_TYPES.get(declared, "any"), declared == "null"


def _fits(value: Any, type_name: str) -> bool:
    if type_name == "any":
        return True
    if type_name == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    expected = {"str": str, "bool": bool, "list": list, "dict": dict}[type_name]
    return isinstance(value, expected)


def check_edit(schema: dict[str, Any] | None, edits: dict[str, Any]) -> None:
    """Refuse edits that name unknown parameters, carry values of the wrong type, or hold
    what cannot be stored or evaluated (``_values``)."""
    if not isinstance(edits, dict) or not edits:
        raise InvalidRequest("an edit needs a non-empty mapping of argument names to new values")
    check(edits, "args")  # what the agent may not send, a reviewer may not either
    if schema is None:
        return
    params = schema.get("params", {})
    for name, value in edits.items():
        spec = params.get(name)
        if spec is None:
            if schema.get("extra"):
                continue
            known = ", ".join(params) or "none"
            raise InvalidRequest(f"the tool has no parameter '{name}' (parameters: {known})")
        if value is None:
            if not spec["nullable"]:
                raise InvalidRequest(f"'{name}' cannot be null")
            continue
        if not _fits(value, spec["type"]):
            raise InvalidRequest(
                f"'{name}' must be {spec['type']}, got {type(value).__name__} {value!r}"
            )
