"""Export the decision log as JSON Lines: each record with its seq, digest and link."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import sqlalchemy as sa

from ..store import Store
from ..store.tables import audit_log


def iter_records(store: Store, since_seq: int = 0) -> Iterator[tuple[int, str, str]]:
    """(seq, digest, record JSON) in order."""
    with store.read() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=5000).execute(
            sa.select(audit_log.c.seq, audit_log.c.hash, audit_log.c.record)
            .where(audit_log.c.seq > since_seq)
            .order_by(audit_log.c.seq)
        )
        try:
            yield from ((int(s), str(h), str(r)) for s, h, r in rows)
        finally:
            rows.close()


def export_jsonl(store: Store, out: IO[str], since_seq: int = 0) -> int:
    """Write one line per record: ``{"seq":..,"hash":..,"record":{...}}``. Returns the count."""
    n = 0
    for seq, digest, record in iter_records(store, since_seq):
        out.write(f'{{"seq":{seq},"hash":"{digest}","record":{record}}}\n')
        n += 1
    return n
