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

GENESIS = "0" * 64
FORMAT = 2  # the format new records are written in
pack_double = struct.Struct(">d").pack


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
