"""RFC 8785 (JSON Canonicalization Scheme): the bytes format-3 log records are hashed as.

Anyone can then recompute a record's digest: parse the exported record with any JSON
parser, canonicalise it with any JCS library, and the bytes are the ones that were hashed.
So the bytes are JCS of the value *as a parser reads it back*, which settles three cases:

- a float goes in as its ECMAScript text (RFC 8785 §3.2.2.3): ``250.0`` is ``250``,
  ``1e-06`` is ``0.000001``, ``-0.0`` is ``0``; NaN and infinities are ``null``;
- a number whose JCS text would be a bare integer beyond ±(2**53 - 1) becomes a string of
  that text (``"9007199254740993"``): other languages' parsers read such integers as
  doubles, or refuse them, and would rebuild other bytes;
- keys are strings, sorted by UTF-16 code unit; a key that is not a string takes the text
  orjson (and so ``canonical``) gives it, and any other value JSON lacks (a tuple, a set,
  a datetime, ...) is what ``canonical`` records for it.

JSON numbers carry no type, so a log record (``encode``) also names, under ``_numbers``,
where a double was written as an integer or as text and where an integer was written as
text; ``decode`` gives those values back their Python type, so that replaying a decision
hands CEL the double or the integer it saw (``args.amount / 1000.0`` fails on an int).

orjson writes most of it: compact UTF-8, strings escaped as §3.2.2.2 asks, keys sorted by
code point (the UTF-16 order unless a key holds a character at or above U+E000), and every
float in [1e-5, 1e16) that is not integral exactly as ECMAScript does (all tested). So the
hot path only walks the value for floats orjson would write otherwise; anything unusual
(a big integer, a key that is not a string, a type JSON lacks, a character at or above
U+E000) takes the slow path, which prepares the whole value in Python.
"""

from __future__ import annotations

from typing import Any

import orjson

from ._canonical import canonical

SAFE_INT = 2**53 - 1  # integers beyond this are recorded as strings
NUMBERS = "_numbers"  # the member of a log record that names retyped numbers
_SAFE = float(SAFE_INT)
_SORTED = orjson.OPT_SORT_KEYS
_FAST = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER  # a big integer: the slow path
_PLAIN: frozenset[type] = frozenset({str, int, bool, type(None)})
_INF = float("inf")
_Fragment = orjson.Fragment
_repr = float.__repr__

Marks = dict[str, str]  # JSON Pointer (RFC 6901) -> "double" | "int"


class _Unusual(Exception):
    """The value holds something only the slow path writes."""


def jcs(value: Any) -> bytes:
    """``value`` in RFC 8785 canonical form (the module docstring says what it maps)."""
    return _encode(value, None)


def encode(record: dict[str, Any]) -> bytes:
    """A log record in RFC 8785 form, naming under ``_numbers`` the values JSON retypes."""
    if NUMBERS in record:
        raise ValueError(f"{NUMBERS!r} is reserved in a log record")
    return _encode(record, NUMBERS)


def decode(text: str | bytes) -> Any:
    """A record as ``encode`` was given it: its ``_numbers`` back to their types."""
    value = orjson.loads(text)
    numbers = value.pop(NUMBERS, None) if type(value) is dict else None
    for pointer, kind in (numbers or {}).items():
        *parents, last = [_unescape(step) for step in pointer.split("/")[1:]]
        node = value
        for step in parents:
            node = node[int(step)] if type(node) is list else node[step]
        at = int(last) if type(node) is list else last
        node[at] = float(node[at]) if kind == "double" else int(node[at])
    return value


def _step(key: Any) -> str:
    """One step of a JSON Pointer (RFC 6901)."""
    name: str = key if type(key) is str else str(key)
    if "~" in name or "/" in name:
        return "/" + name.replace("~", "~0").replace("/", "~1")
    return "/" + name


def _unescape(step: str) -> str:
    return step.replace("~1", "/").replace("~0", "~")


def number_text(x: float) -> str | None:
    """``x`` as ECMAScript's Number.prototype.toString writes it; None for NaN and infinities.

    Python's repr already picks ECMAScript's digits (the shortest that read back as ``x``,
    the nearest of those); only where the exponent goes differs.
    """
    if x != x or x in (_INF, -_INF):
        return None
    if x == 0:
        return "0"
    mantissa, _, exp = _repr(x).partition("e")
    if not exp:
        return mantissa[:-2] if mantissa.endswith(".0") else mantissa
    e = int(exp)
    if e <= -7 or e >= 21:
        return f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"
    sign = "-" if mantissa[0] == "-" else ""
    digits = mantissa.lstrip("-").replace(".", "")
    if e < 0:  # 1e-06 and 1e-05: repr uses an exponent, ECMAScript does not
        return f"{sign}0.{'0' * (-e - 1)}{digits}"
    return f"{sign}{digits}{'0' * (e + 1 - len(digits))}"  # 1e16 <= |x| < 1e21


def _encode(value: Any, numbers: str | None) -> bytes:
    marks: Marks = {}
    try:
        fixed = _fixed(value, marks)
        if marks and numbers is not None:
            fixed[numbers] = marks  # a dict: only a container can hold marks
        out = orjson.dumps(value if fixed is None else fixed, option=_FAST)
    except (_Unusual, orjson.JSONEncodeError):
        return _slow(value, numbers)
    if out.isascii() or max(out) < 0xEE:  # no character at or above U+E000
        return out
    return _slow(value, numbers)


def _float(x: float, marks: Marks, at: str) -> Any:
    """What orjson is handed for ``x`` (at JSON Pointer ``at``): a number it writes as JCS
    does, or the JCS text."""
    if x.is_integer() and -_SAFE <= x <= _SAFE:
        marks[at] = "double"
        return int(x)  # 250.0 -> 250, -0.0 -> 0
    text = number_text(x)
    if text is None:
        return None
    if "." in text or "e" in text:
        return _Fragment(text)  # read back as a double anyway
    marks[at] = "double"
    return text  # a bare integer beyond 2**53: as a string


# -- the hot path: only floats orjson writes otherwise are replaced ------------------------


def _fixed(value: Any, marks: Marks) -> Any:
    """``value`` with floats replaced, or None where nothing needs replacing."""
    kind = type(value)
    if kind is dict:
        return _fixed_object(value, marks, "")
    if kind is list or kind is tuple:
        return _fixed_array(value, marks, "")
    if kind is float:
        return _float(value, marks, "")
    if kind in _PLAIN:
        return None
    raise _Unusual


def _fixed_object(
    value: dict[Any, Any], marks: Marks, at: str, _plain: frozenset[type] = _PLAIN
) -> dict[Any, Any] | None:
    out = None
    for key, item in value.items():
        kind = type(item)
        if kind in _plain:
            continue
        if kind is float:
            if item.is_integer():
                if -_SAFE <= item <= _SAFE:
                    marks[at + _step(key)] = "double"
                    item = int(item)
                else:
                    item = _float(item, marks, at + _step(key))
            elif 1e-5 <= item < 1e16 or -1e16 < item <= -1e-5:
                continue  # orjson writes it as ECMAScript does
            else:
                item = _float(item, marks, at + _step(key))
        elif kind is dict:
            item = _fixed_object(item, marks, at + _step(key))
            if item is None:
                continue
        elif kind is list or kind is tuple:
            if not item:
                continue
            item = _fixed_array(item, marks, at + _step(key))
            if item is None:
                continue
        else:
            raise _Unusual
        if out is None:
            out = value.copy()
        out[key] = item
    return out


def _fixed_array(
    value: list[Any] | tuple[Any, ...], marks: Marks, at: str, _plain: frozenset[type] = _PLAIN
) -> list[Any] | None:
    out = None
    for i, item in enumerate(value):
        kind = type(item)
        if kind in _plain:
            continue
        if kind is float:
            if not item.is_integer() and (1e-5 <= item < 1e16 or -1e16 < item <= -1e-5):
                continue
            item = _float(item, marks, f"{at}/{i}")
        elif kind is dict:
            item = _fixed_object(item, marks, f"{at}/{i}")
            if item is None:
                continue
        elif kind is list or kind is tuple:
            item = _fixed_array(item, marks, f"{at}/{i}")
            if item is None:
                continue
        else:
            raise _Unusual
        if out is None:
            out = list(value)
        out[i] = item
    return out


# -- the slow path: everything prepared here -----------------------------------------------


def _slow(value: Any, numbers: str | None) -> bytes:
    marks: Marks = {}
    if type(value) is not dict:
        return orjson.dumps(_prepared(value, marks, ""), option=_SORTED)
    members = _members(value, marks, "")
    if marks and numbers is not None:
        members[numbers] = _object(marks)  # pointers hold keys: they sort like keys
    return orjson.dumps(_object(members), option=_SORTED)


def _prepared(value: Any, marks: Marks, at: str) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -SAFE_INT <= value <= SAFE_INT:
            return value
        marks[at] = "int"
        return str(value)
    if kind is float:
        return _float(value, marks, at)
    if kind is dict:
        return _object(_members(value, marks, at))
    if kind is list or kind is tuple:
        return [_prepared(item, marks, f"{at}/{i}") for i, item in enumerate(value)]
    # Anything else as the canonical form records it (a set as a sorted list, a datetime as
    # ISO text, a dataclass as an object, a subclass as its base value, ...), read back.
    return _prepared(orjson.loads(canonical(value)), marks, at)


def _members(value: dict[Any, Any], marks: Marks, at: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key if type(key) is str else _key_text(key)
        out[name] = _prepared(item, marks, at + _step(name))
    if len(out) != len(value):
        raise ValueError(f"two keys of one object are written alike: {list(value)!r}")
    return out


def _object(members: dict[str, Any]) -> Any:
    """The object as orjson is handed it: as is, or written here where code point order
    and UTF-16 order differ (a key with a character at or above U+E000)."""
    if all(key.isascii() or max(key) < "\ue000" for key in members):
        return members
    ordered = sorted(members.items(), key=lambda kv: kv[0].encode("utf-16-be"))
    parts = [orjson.dumps(k) + b":" + orjson.dumps(v, option=_SORTED) for k, v in ordered]
    return _Fragment(b"{" + b",".join(parts) + b"}")


def _key_text(key: Any) -> str:
    """The text orjson (and so ``canonical``) writes for a key that is not a string."""
    text = orjson.dumps({key: None}, option=orjson.OPT_NON_STR_KEYS)
    return str(next(iter(orjson.loads(text))))
