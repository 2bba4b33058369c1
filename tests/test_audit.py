"""The decision log: verify catches every kind of tampering and names the record."""

from __future__ import annotations

import io
import json

import pytest
import sqlalchemy as sa

from proctor import Denied, Proctor
from proctor.audit.export import export_jsonl
from proctor.audit.verify import verify
from proctor.store.chain import GENESIS, header, header_v2, link
from proctor.store.tables import audit_log, state

POLICY = """
policy: audit-test
agents: {bot: {tools: [lookup]}}
rules: [{id: ok, when: 'args.n % 3 != 0', decide: allow}]
"""


@pytest.fixture
def logged(px: Proctor) -> Proctor:
    px.policy.apply(POLICY)

    @px.tool(agent="bot")
    def lookup(n: int) -> int:
        return n

    for n in range(1, 16):
        if n % 3:
            lookup(n)
        else:  # every third call is denied by the policy
            with pytest.raises(Denied):
                lookup(n)
    return px


def run_sql(px: Proctor, statement: str, **params: object) -> None:
    with px.store.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def head(px: Proctor) -> int:
    with px.store.read() as conn:
        return int(conn.execute(sa.select(state.c.head_seq)).scalar_one())


def test_intact_log_verifies(logged: Proctor) -> None:
    result = verify(logged.store)
    assert result.ok, result.message()
    assert result.checked == head(logged) == 1 + 15 + 10  # apply + decisions + outcomes


def test_modified_record_is_named(logged: Proctor) -> None:
    with logged.store.read() as conn:
        record = conn.execute(
            sa.select(audit_log.c.record).where(audit_log.c.seq == 7)
        ).scalar_one()
    run_sql(
        logged,
        "UPDATE proctor_audit_log SET record = :r WHERE seq = 7",
        r=record.replace('"allow"', '"deny"').replace('"n":', '"n": 0, "x":'),
    )
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 7)
    assert "changed" in (result.problem or "")


def test_modified_indexed_column_is_named(logged: Proctor) -> None:
    run_sql(logged, "UPDATE proctor_audit_log SET decision = 'review' WHERE seq = 4")
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 4)


def test_deleted_record_is_named(logged: Proctor) -> None:
    run_sql(logged, "DELETE FROM proctor_audit_log WHERE seq = 10")
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 10)
    assert "missing" in (result.problem or "")


def test_inserted_record_is_named(logged: Proctor) -> None:
    # Make room by shifting later records up one, as an attacker inserting in the middle would.
    n = head(logged)
    for seq in range(n, 5, -1):
        run_sql(
            logged, "UPDATE proctor_audit_log SET seq = :new WHERE seq = :old", new=seq + 1, old=seq
        )
    with logged.store.read() as conn:
        row = conn.execute(sa.select(audit_log).where(audit_log.c.seq == 5)).one()._mapping
    run_sql(
        logged,
        "INSERT INTO proctor_audit_log (seq, id, ts, kind, agent, tool, decision, hash, record)"
        " VALUES (6, 'forged', :ts, :kind, :agent, :tool, 'allow', :hash, :record)",
        ts=row["ts"],
        kind=row["kind"],
        agent=row["agent"],
        tool=row["tool"],
        hash=row["hash"],
        record=row["record"],
    )
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 6)


def test_reordered_records_are_named(logged: Proctor) -> None:
    run_sql(logged, "UPDATE proctor_audit_log SET seq = -1 WHERE seq = 8")
    run_sql(logged, "UPDATE proctor_audit_log SET seq = 8 WHERE seq = 9")
    run_sql(logged, "UPDATE proctor_audit_log SET seq = 9 WHERE seq = -1")
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 8)


def test_truncated_newest_records_are_detected(logged: Proctor) -> None:
    n = head(logged)
    run_sql(logged, "DELETE FROM proctor_audit_log WHERE seq > :k", k=n - 3)
    result = verify(logged.store)
    assert result.ok is False
    assert result.bad_seq == n - 2
    assert "cut off" in (result.problem or "")


def test_export_jsonl_round_trips_the_chain(logged: Proctor) -> None:
    buf = io.StringIO()
    count = export_jsonl(logged.store, buf)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert count == len(lines) == head(logged)
    assert [line["seq"] for line in lines] == list(range(1, count + 1))
    assert lines[0]["record"]["kind"] == "policy.apply"
    assert {line["record"]["kind"] for line in lines[1:]} == {"decision", "outcome"}
    assert all(len(line["hash"]) == 64 for line in lines)


def test_moved_time_is_named(logged: Proctor) -> None:
    # Time feeds KPIs, alerts, search and replay windows: moving it must break the chain.
    run_sql(logged, "UPDATE proctor_audit_log SET ts = ts - 30 * 86400 WHERE seq = 5")
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 5)


def test_changed_record_id_is_named(logged: Proctor) -> None:
    run_sql(logged, "UPDATE proctor_audit_log SET id = :i WHERE seq = 6", i="f" * 32)
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 6)


def test_records_keep_verifying_under_the_format_they_were_written_in(logged: Proctor) -> None:
    """A log started by an older release: its first records are format 1, the rest 2."""
    with logged.store.read() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    prev = GENESIS
    for row in rows:
        fmt = 1 if row.seq <= 5 else 2
        head_bytes = (
            header(row.seq, row.kind, row.agent, row.tool, row.decision)
            if fmt == 1
            else header_v2(row.seq, row.id, row.ts, row.kind, row.agent, row.tool, row.decision)
        )
        prev = link(prev, head_bytes, row.record.encode())
        run_sql(
            logged,
            "UPDATE proctor_audit_log SET hash = :h, fmt = :f WHERE seq = :s",
            h=prev,
            f=fmt,
            s=row.seq,
        )
    run_sql(logged, "UPDATE proctor_state SET head_hash = :h WHERE id = 1", h=prev)
    assert verify(logged.store).ok
    # A record's format is part of what is checked: claiming the other one fails.
    run_sql(logged, "UPDATE proctor_audit_log SET fmt = 2 WHERE seq = 3")
    assert (verify(logged.store).ok, verify(logged.store).bad_seq) == (False, 3)
    run_sql(logged, "UPDATE proctor_audit_log SET fmt = 9 WHERE seq = 3")
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 3)
    assert "unknown record format" in (result.problem or "")
