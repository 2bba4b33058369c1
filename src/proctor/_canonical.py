"""Canonical JSON: the one byte form of a value that digests and grants are bound to.

Keys sorted, compact, UTF-8; values JSON lacks are recorded by a stable text form, and
integers beyond 64 bits as their decimal text.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _fallback(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=repr) if isinstance(value, set | frozenset) else list(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def canonical(value: Any) -> bytes:
    """Key-sorted compact JSON; values JSON lacks are recorded by a stable text form."""
    try:
        return orjson.dumps(value, option=_OPTIONS, default=_fallback)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        return orjson.dumps(_big_ints_as_text(value), option=_OPTIONS, default=_fallback)


_INT64 = range(-(2**63), 2**63)


def _big_ints_as_text(value: Any) -> Any:
    """Integers beyond 64 bits as their decimal text: JSON encoders and CEL stop there."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value in _INT64 else str(value)
    if isinstance(value, dict):
        return {k: _big_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints_as_text(v) for v in value]
    return value


def args_digest(args: Any) -> str:
    """SHA-256 of the canonical arguments: what a grant is bound to."""
    return hashlib.sha256(canonical(args)).hexdigest()
