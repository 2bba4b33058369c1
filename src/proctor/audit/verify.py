"""Verify the decision log offline: every link, every indexed column, and the head."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from ..store import Store
from ..store.tables import audit_log, state
from .chain import GENESIS, header

BATCH = 5000


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_seq: int
    bad_seq: int | None = None
    problem: str | None = None

    def message(self) -> str:
        if self.ok:
            return f"ok: {self.checked} records verified, chain head at seq {self.head_seq}"
        return f"FAILED at record {self.bad_seq}: {self.problem} ({self.checked} records checked before it)"


def verify(store: Store, progress: Callable[[int], None] | None = None) -> VerifyResult:
    """Walk the chain in seq order. Names the first record that does not fit."""
    sha256 = hashlib.sha256
    with store.read() as conn:
        head = conn.execute(sa.select(state.c.head_seq, state.c.head_hash)).one()
        head_seq, head_hash = int(head[0]), str(head[1])
        result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(
            sa.select(audit_log.c.seq, audit_log.c.kind, audit_log.c.agent, audit_log.c.tool,
                      audit_log.c.decision, audit_log.c.hash, audit_log.c.record)
            .order_by(audit_log.c.seq)
        )
        prev = bytes.fromhex(GENESIS)
        prev_hex = GENESIS
        expected = 1
        checked = 0
        for seq, kind, agent, tool, decision, digest, record in result:
            if seq != expected:
                what = "is missing" if seq > expected else "is out of order or duplicated"
                return VerifyResult(False, checked, head_seq, expected if seq > expected else seq,
                                    f"record {expected} {what} (found {seq} next)")
            h = sha256(prev)
            h.update(header(seq, kind, agent, tool, decision))
            h.update(record.encode())
            if h.hexdigest() != digest:
                return VerifyResult(False, checked, head_seq, seq,
                                    "its content or its link to the previous record was changed")
            prev_hex = digest
            prev = bytes.fromhex(digest)
            expected += 1
            checked += 1
            if progress is not None and checked % 50_000 == 0:
                progress(checked)
    if checked != head_seq or (checked and prev_hex != head_hash):
        missing_from = checked + 1
        return VerifyResult(
            False, checked, head_seq, missing_from,
            f"the log ends at record {checked} but the chain head says {head_seq}: "
            "the newest records were cut off or the head was altered",
        )
    return VerifyResult(True, checked, head_seq)
