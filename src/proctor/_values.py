"""What an action's arguments and context may hold: values JSON, the log and CEL all accept.

Three kinds of Python value pass every type check and still break a decision, so each is
refused where it enters (the gate records a ``deny`` with rule id ``invalid-input``; the
server answers 422 naming the field):

- nesting deeper than ``MAX_DEPTH`` containers. The JSON encoder of the log stops at 254
  levels; 32 is far beyond any tool's arguments, keeps the check's own recursion short,
  and ends a self-referencing dict at once;
- a lone surrogate (``"\\ud800"``) in a string or a key: not valid text, so neither UTF-8
  (the log, the database) nor CEL can hold it;
- ``inf``, ``-inf`` and NaN: JSON has no such numbers (the log would record ``null``), and
  in CEL ``-inf <= 100.0`` is true, so ``-inf`` passed an ``amount <= 100.0`` allow rule,
  while NaN compares with nothing (denied only if some rule happened to read it).

Keys must be strings: the canonical form writes other keys as text, so ``1`` and ``"1"``
would collide and an approved action would resume with different arguments. Any other
value (a tuple, a set, a datetime) is allowed if its canonical text form can be recorded;
CEL refuses what it cannot convert, which denies the action by the rule that reads it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ._canonical import canonical
from ._errors import InvalidRequest

MAX_DEPTH = 32
OMITTED = "_omitted"

_SURROGATE = re.compile("[\ud800-\udfff]")
_SEQUENCES = (list, tuple, set, frozenset)


def check(value: Any, root: str) -> None:
    """Raise ``InvalidRequest`` naming the first path in ``value`` that cannot be recorded
    or evaluated (``args.items[3].name: ...``); ``root`` names ``value`` itself."""
    found = problem(value, root)
    if found is not None:
        raise InvalidRequest(found)


def problem(value: Any, root: str) -> str | None:
    """``check`` without the exception: what is wrong with ``value`` and where, or None.

    Every decision pays for this, so a flat dict of ASCII text, numbers, booleans and
    None is checked in one loop without building anything.
    """
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():  # isascii is O(1) on str
                break
            kind = type(item)
            if kind is str:
                if not item.isascii():
                    break
            elif kind is float:
                if item - item != 0.0:  # inf - inf and nan - nan are nan
                    break
            elif kind is not int and kind is not bool and item is not None:
                break
        else:
            return None
    found = _walk(value, MAX_DEPTH)
    if found is None:
        return None
    segments, what = found
    return f"{_path(root, segments)}: {what}"


def omitted(reason: str) -> dict[str, Any]:
    """What is stored in place of arguments or context that cannot be."""
    return {OMITTED: f"invalid: {reason}"}


def text(value: str) -> str:
    """``value`` with each lone surrogate replaced by U+FFFD, so it can be stored."""
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)


def storable_json(value: Any, root: str = "result") -> bytes:
    """Canonical JSON of a value that must be stored whatever it holds (a tool's result,
    which has already happened): lone surrogates become U+FFFD and non-finite numbers
    ``null``; a value nested deeper than ``MAX_DEPTH`` or otherwise not encodable is
    replaced by ``{"_omitted": "invalid: <why>"}``."""
    if problem(value, root) is not None:
        try:
            value = _repaired(value, MAX_DEPTH)
        except _TooDeep:
            return canonical(omitted(f"{root}: nested deeper than {MAX_DEPTH} levels"))
    try:
        return canonical(value)
    except orjson.JSONEncodeError as exc:
        return canonical(omitted(f"{root}: {text(str(exc))}"))


# -- the slow path: anything but a flat dict of ASCII scalars ---------------------------------

_Found = tuple[list[str | int], str]


def _walk(value: Any, depth: int) -> _Found | None:
    """The first problem in ``value`` and where it is (segments innermost first)."""
    if isinstance(value, dict):
        if depth <= 0:
            return [], f"nested deeper than {MAX_DEPTH} levels"
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                shown = _short(ascii(key))
                return [], f"the key {shown} ({type(key).__name__}) is not a string"
            found = None if key.isascii() else _in_text(key)
            if found is None:
                kind = type(item)  # scalars inline: a call per value would double the cost
                if kind is str:
                    if item.isascii():
                        continue
                elif kind is float:
                    if item - item == 0.0:
                        continue
                elif kind is int or kind is bool or item is None:
                    continue
                found = _walk(item, depth - 1)
            if found is not None:
                found[0].append(key)
                return found
        return None
    if isinstance(value, _SEQUENCES):
        if depth <= 0:
            return [], f"nested deeper than {MAX_DEPTH} levels"
        for i, item in enumerate(value):
            kind = type(item)
            if kind is str:
                if item.isascii():
                    continue
            elif kind is float:
                if item - item == 0.0:
                    continue
            elif kind is int or kind is bool or item is None:
                continue
            found = _walk(item, depth - 1)
            if found is not None:
                found[0].append(i)
                return found
        return None
    if isinstance(value, str):
        return _in_text(value)
    if isinstance(value, float):
        return None if value - value == 0.0 else ([], f"{value!r} is not a finite number")
    if isinstance(value, int) or value is None:
        return None
    try:  # anything else is recorded by its canonical text form: it must have one
        canonical(value)
    except orjson.JSONEncodeError as exc:
        return [], f"a {type(value).__name__} that cannot be recorded ({text(str(exc))})"
    return None


def _in_text(value: str) -> _Found | None:
    if value.isascii():
        return None
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return [], f"a lone surrogate (\\u{ord(found.group()):04x}) is not valid text"


def _path(root: str, segments: list[str | int]) -> str:
    parts = [root]
    for segment in reversed(segments[-12:]):
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif segment.isascii() and segment.isidentifier() and len(segment) <= 64:
            parts.append(f".{segment}")
        else:
            parts.append(f"[{_short(repr(segment))}]")  # repr escapes surrogates and controls
    if len(segments) > 12:
        parts.append("...")
    return "".join(parts)


def _short(shown: str) -> str:
    return shown if len(shown) <= 60 else shown[:57] + "..."


class _TooDeep(Exception):
    pass


def _repaired(value: Any, depth: int) -> Any:
    """A copy of ``value`` that can be stored: text made valid, non-finite numbers None."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, float):
        return value if value - value == 0.0 else None
    if isinstance(value, dict):
        if depth <= 0:
            raise _TooDeep
        return {
            text(k) if isinstance(k, str) else k: _repaired(v, depth - 1) for k, v in value.items()
        }
    if isinstance(value, _SEQUENCES):
        if depth <= 0:
            raise _TooDeep
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_repaired(v, depth - 1) for v in items]  # sets in canonical's order
    return value
