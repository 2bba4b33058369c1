"""Export the decision log as JSON Lines: each record with all its digest covers.

One line per record, enough to verify the chain with no database and no Proctor
(docs/audit-format.md has the format and a verifier)::

    {"seq":..,"fmt":..,"hash":..,"id":..,"ts":..,"kind":..,"agent":..,"tool":..,
     "decision":..,"record":{...}}

The columns are the row's own, as its header chained them: a record's body may hold a
key of the same name (a ``review.choose`` names the ``tool`` picked), so they are not
read back from the record. A record of format 1 or 2 was hashed as the exact text orjson
wrote, which a JCS library does not rebuild: its line also carries that text as
``"text"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import orjson
import sqlalchemy as sa

from ..store import Store
from ..store.tables import audit_log

_BATCH = 5000
_LEGACY = (1, 2)  # formats whose record bytes are orjson's text, not JCS


def iter_records(store: Store, since_seq: int = 0) -> Iterator[tuple[int, str, str]]:
    """(seq, digest, record JSON) in order."""
    with store.read() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(
            sa.select(audit_log.c.seq, audit_log.c.hash, audit_log.c.record)
            .where(audit_log.c.seq > since_seq)
            .order_by(audit_log.c.seq)
        )
        try:
            yield from ((int(s), str(h), str(r)) for s, h, r in rows)
        finally:
            rows.close()


def iter_lines(store: Store, since_seq: int = 0) -> Iterator[str]:
    """The export's lines in seq order, each ending in a newline."""
    c = audit_log.c
    with store.read() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(
            sa.select(
                c.seq, c.fmt, c.hash, c.id, c.ts, c.kind, c.agent, c.tool, c.decision, c.record
            )
            .where(c.seq > since_seq)
            .order_by(c.seq)
        )
        try:
            for seq, fmt, digest, rid, ts, kind, agent, tool, decision, record in rows:
                columns = orjson.dumps(
                    {
                        "seq": int(seq),
                        "fmt": int(fmt),
                        "hash": digest,
                        "id": rid,
                        "ts": float(ts),
                        "kind": kind,
                        "agent": agent,
                        "tool": tool,
                        "decision": decision,
                    }
                ).decode()
                text = f',"text":{orjson.dumps(record).decode()}' if fmt in _LEGACY else ""
                yield f'{columns[:-1]},"record":{record}{text}}}\n'
        finally:
            rows.close()


def export_jsonl(store: Store, out: IO[str], since_seq: int = 0) -> int:
    """Write one line per record (see the module docstring). Returns the count."""
    n = 0
    for line in iter_lines(store, since_seq):
        out.write(line)
        n += 1
    return n
