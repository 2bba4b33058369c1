"""The hash chain: the bytes of each record and the digest that links it to the last.

digest(n) = SHA-256( digest(n-1) as 32 bytes      (record 1: 32 zero bytes)
                     || header(n)
                     || record bytes(n) )

    format 1: header = "seq|kind|agent|tool|decision|" as UTF-8;
              record bytes = key-sorted compact JSON as orjson writes it (``canonical``)
    format 2: header = "seq|id|kind|agent|tool|decision|" as UTF-8 || ts as an IEEE 754
              double, 8 bytes big-endian (the exact stored value, cheaper than its text);
              record bytes as format 1
    format 3: header = "3|" || format 2's header (so the format itself is chained: a
              row relabelled 2 or 3 fails); record bytes = RFC 8785 (JCS) of the record,
              which an outside verifier rebuilds from the exported record with any JCS
              library (docs/audit-format.md, with a verifier); ``decode`` reads any
              format back

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

from .._jcs import decode, encode  # format 3's record bytes, and reading any format back

GENESIS = "0" * 64
FORMAT = 3  # the format new records are written in
pack_double = struct.Struct(">d").pack

__all__ = [
    "FORMAT",
    "GENESIS",
    "decode",
    "encode",
    "header",
    "header_v2",
    "header_v3",
    "link",
    "pack_double",
]


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


def header_v3(
    seq: int,
    record_id: str,
    ts: float,
    kind: str,
    agent: str | None,
    tool: str | None,
    decision: str | None,
) -> bytes:
    """Format 3: format 2's header behind the format's own number."""
    return b"3|" + header_v2(seq, record_id, ts, kind, agent, tool, decision)


def link(prev_hex: str, head: bytes, record: bytes) -> str:
    h = hashlib.sha256(bytes.fromhex(prev_hex))
    h.update(head)
    h.update(record)
    return h.hexdigest()
