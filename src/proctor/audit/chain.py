"""The hash chain: canonical record bytes and the digest that links each record to the last.

digest(n) = SHA-256( digest(n-1) as 32 bytes
                     || header(n) as UTF-8
                     || canonical JSON of record n )

    format 1: header = "seq|kind|agent|tool|decision|"
    format 2: header = "seq|id|kind|agent|tool|decision|" || ts as an IEEE 754 double,
              8 bytes big-endian (the exact stored value, cheaper to encode than its text)

The header binds the indexed columns to the chain, so editing a column a query relies on
breaks verification as surely as editing the record; format 2 adds the record's id and its
time, which KPIs, alerts, search and replay windows read. Each row stores its format, and
records keep verifying under the format they were written with. The chain's head (last seq
and digest) is also kept outside the chained rows, so cutting off the newest records is
visible.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import orjson

GENESIS = "0" * 64
FORMAT = 2  # the format new records are written in
pack_double = struct.Struct(">d").pack
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


def header(seq: int, kind: str, agent: str | None, tool: str | None, decision: str | None) -> bytes:
    """Format 1 (records written before the id and time were chained)."""
    return f"{seq}|{kind}|{agent or ''}|{tool or ''}|{decision or ''}|".encode()


def header_v2(
    seq: int,
    record_id: str,
    ts: float,
    kind: str,
    agent: str | None,
    tool: str | None,
    decision: str | None,
) -> bytes:
    """Format 2: the record's id and time are chained too."""
    return (
        f"{seq}|{record_id}|{kind}|{agent or ''}|{tool or ''}|{decision or ''}|".encode()
        + pack_double(ts)
    )


def link(prev_hex: str, head: bytes, record: bytes) -> str:
    h = hashlib.sha256(bytes.fromhex(prev_hex))
    h.update(head)
    h.update(record)
    return h.hexdigest()
