"""The decision log: verify catches every kind of tampering and names the record."""

from __future__ import annotations

import io
import json

import pytest
import rfc8785
import sqlalchemy as sa

from proctor import Denied, Proctor
from proctor._canonical import canonical
from proctor.audit.export import export_jsonl
from proctor.audit.verify import verify
from proctor.store.chain import GENESIS, decode, header, header_v2, header_v3, link
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


EXPORTED = ["seq", "fmt", "hash", "id", "ts", "kind", "agent", "tool", "decision", "record"]


def test_export_jsonl_round_trips_the_chain(logged: Proctor) -> None:
    buf = io.StringIO()
    count = export_jsonl(logged.store, buf)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert count == len(lines) == head(logged)
    assert [line["seq"] for line in lines] == list(range(1, count + 1))
    assert lines[0]["record"]["kind"] == "policy.apply"
    assert {line["record"]["kind"] for line in lines[1:]} == {"decision", "outcome"}
    assert all(len(line["hash"]) == 64 for line in lines)
    with logged.store.read() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    for line, row in zip(lines, rows, strict=True):  # the columns the header chains, as stored
        assert list(line) == EXPORTED
        assert (line["id"], line["ts"], line["kind"], line["agent"]) == row[1:5]
        assert (line["tool"], line["decision"], line["fmt"]) == (row.tool, row.decision, 3)
        assert rfc8785.dumps(line["record"]) == row.record.encode()


def test_export_carries_the_hashed_text_of_older_formats(logged: Proctor) -> None:
    make_legacy(logged, 2, 4)
    buf = io.StringIO()
    export_jsonl(logged.store, buf, since_seq=1)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [line["seq"] for line in lines[:4]] == [2, 3, 4, 5]
    assert [line["fmt"] for line in lines[:4]] == [1, 2, 2, 3]
    assert all(json.loads(line["text"]) == line["record"] for line in lines[:3])
    assert all("text" not in line for line in lines[3:])


def test_moved_time_is_named(logged: Proctor) -> None:
    # Time feeds KPIs, alerts, search and replay windows: moving it must break the chain.
    run_sql(logged, "UPDATE proctor_audit_log SET ts = ts - 30 * 86400 WHERE seq = 5")
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 5)


def test_changed_record_id_is_named(logged: Proctor) -> None:
    run_sql(logged, "UPDATE proctor_audit_log SET id = :i WHERE seq = 6", i="f" * 32)
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 6)


def make_legacy(px: Proctor, fmt1_upto: int, fmt2_upto: int) -> None:
    """Rewrite the log as an older release would have left it: records up to ``fmt1_upto``
    in format 1 and up to ``fmt2_upto`` in format 2, their text as orjson wrote it (250.0,
    not 250); the rest stay format 3. Every link after them is made again."""
    with px.store.read() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    prev = GENESIS
    for row in rows:
        fmt = 1 if row.seq <= fmt1_upto else 2 if row.seq <= fmt2_upto else 3
        text = row.record
        if fmt == 3:
            head_bytes = header_v3(
                row.seq, row.id, row.ts, row.kind, row.agent, row.tool, row.decision
            )
        else:
            old = decode(text)
            old["v"] = fmt
            text = canonical(old).decode()
            head_bytes = (
                header(row.seq, row.kind, row.agent, row.tool, row.decision)
                if fmt == 1
                else header_v2(row.seq, row.id, row.ts, row.kind, row.agent, row.tool, row.decision)
            )
        prev = link(prev, head_bytes, text.encode())
        run_sql(
            px,
            "UPDATE proctor_audit_log SET hash = :h, fmt = :f, record = :r WHERE seq = :s",
            h=prev,
            f=fmt,
            r=text,
            s=row.seq,
        )
    run_sql(px, "UPDATE proctor_state SET head_hash = :h WHERE id = 1", h=prev)


def test_records_keep_verifying_under_the_format_they_were_written_in(logged: Proctor) -> None:
    """A log started by older releases: format 1 records, then 2, then 3, in one chain."""
    make_legacy(logged, 5, 12)
    with logged.store.read() as conn:
        fmts = [f for (f,) in conn.execute(sa.select(audit_log.c.fmt).order_by(audit_log.c.seq))]
    assert fmts == [1] * 5 + [2] * 7 + [3] * (len(fmts) - 12)
    assert verify(logged.store).ok
    # A record's format is part of what is checked: claiming another one fails.
    for seq, claimed in [(3, 2), (8, 1), (8, 3), (20, 2), (20, 1)]:
        with logged.store.read() as conn:
            fmt = conn.execute(sa.select(audit_log.c.fmt).where(audit_log.c.seq == seq)).scalar()
        run_sql(logged, "UPDATE proctor_audit_log SET fmt = :f WHERE seq = :s", f=claimed, s=seq)
        result = verify(logged.store)
        assert (result.ok, result.bad_seq) == (False, seq), (seq, claimed)
        run_sql(logged, "UPDATE proctor_audit_log SET fmt = :f WHERE seq = :s", f=fmt, s=seq)
    assert verify(logged.store).ok
    run_sql(logged, "UPDATE proctor_audit_log SET fmt = 9 WHERE seq = 3")
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, 3)
    assert "unknown record format" in (result.problem or "")


# -- format 3: RFC 8785 records -----------------------------------------------------------


def test_new_records_are_format_3_and_their_own_canonical_form(logged: Proctor) -> None:
    with logged.store.read() as conn:
        rows = conn.execute(sa.select(audit_log.c.fmt, audit_log.c.record)).all()
    assert {fmt for fmt, _ in rows} == {3}
    for _, text in rows:
        assert rfc8785.dumps(json.loads(text)) == text.encode()
        assert json.loads(text)["v"] == 3


def test_a_float_argument_is_recorded_as_jcs_and_read_back_as_a_float(px: Proctor) -> None:
    px.policy.apply(POLICY)

    @px.tool(agent="bot")
    def lookup(n: int, amount: float, tiny: float) -> int:
        return n

    lookup(1, 250.0, 1e-7)
    with px.store.read() as conn:
        text = conn.execute(
            sa.select(audit_log.c.record).where(audit_log.c.kind == "decision")
        ).scalar_one()
    assert '"amount":250,' in text and '"tiny":1e-7' in text
    assert json.loads(text)["_numbers"]["/action/args/amount"] == "double"
    args = decode(text)["action"]["args"]
    assert args == {"n": 1, "amount": 250.0, "tiny": 1e-7}
    assert {k: type(v) for k, v in args.items()} == {"n": int, "amount": float, "tiny": float}


COLUMNS = [
    ("seq", "seq = seq + 1000"),
    ("id", "id = 'ffffffffffffffffffffffffffffffff'"),
    ("ts", "ts = ts + 0.000001"),
    ("kind", "kind = 'outcome'"),
    ("agent", "agent = 'other-bot'"),
    ("tool", "tool = NULL"),
    ("decision", "decision = 'deny'"),
    ("hash", "hash = '" + "0" * 64 + "'"),
    ("fmt", "fmt = 2"),
    ("record", r"""record = replace(record, '"n"\:4}', '"n"\:5}')"""),  # \: is no bind
    ("record spacing", "record = replace(record, ',', ', ')"),
]


@pytest.mark.parametrize(("column", "change"), COLUMNS, ids=[c for c, _ in COLUMNS])
def test_tampering_with_any_column_of_a_format_3_record_is_caught(
    logged: Proctor, column: str, change: str
) -> None:
    with logged.store.read() as conn:
        seq = conn.execute(
            sa.select(audit_log.c.seq).where(
                audit_log.c.kind == "decision", audit_log.c.record.like('%"n":4}%')
            )
        ).scalar_one()
    run_sql(logged, f"UPDATE proctor_audit_log SET {change} WHERE seq = :s", s=seq)
    result = verify(logged.store)
    assert (result.ok, result.bad_seq) == (False, seq), result.message()
