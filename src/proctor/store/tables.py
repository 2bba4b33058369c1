"""SQLAlchemy Core tables. Changing one means a new Alembic revision in migrations/versions."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()
SEQ = BigInteger().with_variant(Integer(), "sqlite")

# One row: the head of the audit chain and the active policy version. Every decision reads
# it inside its write transaction, so a decision always names exactly one policy version
# and a truncated log disagrees with the head.
state = Table(
    "proctor_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("head_seq", BigInteger, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("policy_version", String(64), nullable=True),
    Column("updated_at", Float, nullable=False),
    # 0004: bumped on every kill, revive or stage change, so each process reloads its
    # controls the moment they change and not otherwise
    Column("controls_epoch", Integer, nullable=False, server_default="0"),
    Column("shadow_version", String(64), nullable=True),
)

policies = Table(
    "proctor_policies",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("author", String(200), nullable=True),
    Column("message", Text, nullable=True),
)

audit_log = Table(
    "proctor_audit_log",
    metadata,
    # SQLite makes only a column declared exactly INTEGER PRIMARY KEY the rowid; BIGINT
    # would add a second B-tree written on every decision.
    Column("seq", SEQ, primary_key=True, autoincrement=False),
    Column("id", String(32), nullable=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("agent", String(200), nullable=True),
    Column("tool", String(200), nullable=True),
    Column("decision", String(16), nullable=True),
    Column("hash", String(64), nullable=False),
    Column("record", Text, nullable=False),
    # 0007: how the record's digest was computed (1: seq and indexed columns in the header;
    # 2: the record id and time as well; 3: the format too, and the record in RFC 8785
    # form; store/chain.py). Old records keep verifying under their format.
    Column("fmt", SmallInteger, nullable=False, server_default="1"),
)
# No secondary index at all: each one is a page written on every decision's commit (a
# random-key one, like the record id, costs more than the rest of the write). Readers go
# by seq, newest first.

review_items = Table(
    "proctor_review_items",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # approval | exception | sample | choice
    Column("status", String(16), nullable=False),
    Column("queue", String(200), nullable=False),
    Column("agent", String(200), nullable=False),
    Column("tool", String(200), nullable=False),
    Column("decision_id", String(32), nullable=False),
    Column("decision_seq", BigInteger, nullable=False),
    Column("run_id", String(32), nullable=True),
    Column("policy_version", String(64), nullable=True),
    Column("rule_ids", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("risk", Float, nullable=True),
    Column("args", Text, nullable=False),  # masked
    Column("args_digest", String(64), nullable=False),
    Column("context", Text, nullable=False),  # masked
    Column("detail", Text, nullable=True),  # the error of an exception item, etc.
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    # 0002: the review loop
    Column("sla_due", Float, nullable=True),
    Column("impact", Float, nullable=True),
    Column("quorum", Integer, nullable=False, server_default="1"),
    Column("params", Text, nullable=True),
    Column("history", Text, nullable=True),
    Column("options", Text, nullable=True),
    Column("chosen", Integer, nullable=True),
    Column("exec_args", Text, nullable=True),
    Column("edited_args", Text, nullable=True),
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", Float, nullable=True),
    Column("note", Text, nullable=True),
    Column("escalated_from", String(200), nullable=True),
    Column("grant_digest", String(64), nullable=True),
    Column("grant_policy_version", String(64), nullable=True),
    Column("grant_expires_at", Float, nullable=True),
    Column("claim_owner", String(200), nullable=True),
    Column("claimed_at", Float, nullable=True),
    Column("result", Text, nullable=True),
    Column("result_error", Text, nullable=True),
    Column("sla_breached_at", Float, nullable=True),
    # 0007: a claim is held under a lease its runner renews; SHA-256 of the claim's token,
    # which only the runner holds and must show to record the outcome
    Column("lease_expires_at", Float, nullable=True),
    Column("claim_token", String(64), nullable=True),
    # 0008: whether a pending item holds its run, what its rejection does to the run's
    # other work, and the call identity it belongs to
    Column("hold_run", Boolean, nullable=False, server_default="1"),
    Column("on_reject", String(24), nullable=True),
    Column("call_id", String(32), nullable=True),
)
Index("ix_review_status_queue", review_items.c.status, review_items.c.queue)
Index("ix_review_run", review_items.c.run_id, review_items.c.status)  # holds, per decision

# 0008: calls with an identity (a caller's tool-call id, a business key, named arguments):
# a repeat of a completed call returns its recorded result; a call that may or may not
# have happened is "unknown" until reconciled. Only calls with an identity get a row.
calls = Table(
    "proctor_calls",
    metadata,
    # Rows are appended in the order calls are first decided, so the sweeper walks the
    # new ones from a mark instead of an index every call would pay for.
    Column("n", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False),  # a digest of (agent, tool, key)
    Column("agent", String(200), nullable=False),
    Column("tool", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("args_digest", String(64), nullable=False),
    # decided | executing | done | failed | unknown | pending | denied
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("decision_id", String(32), nullable=True),
    Column("decision_seq", BigInteger, nullable=True),
    Column("item_id", String(32), nullable=True),
    Column("result", Text, nullable=True),
    Column("result_error", Text, nullable=True),
    Column("claim_token", String(64), nullable=True),
    Column("claim_owner", String(200), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("retried", Boolean, nullable=False, server_default="0"),  # after "not committed"
    Column("seqs", Text, nullable=False, server_default=""),  # its records' seqs, comma-separated
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
Index("ix_calls_id", calls.c.id, unique=True)

# Calls in flight (executing or unknown) that the sweeper's mark has passed: the few it
# must look at again, kept by the sweeper itself, so the hot path writes no index for them.
calls_open = Table(
    "proctor_calls_open",
    metadata,
    Column("n", BigInteger, primary_key=True, autoincrement=False),
)

# Where each sweeper got to ("calls": the first row of proctor_calls it has not seen).
sweep_marks = Table(
    "proctor_sweep_marks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("mark", BigInteger, nullable=False),
)

# 0008: runs that made an action, so a run started elsewhere with ``parent=`` finds its
# ancestors (and their holds) in the database
runs = Table(
    "proctor_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("parent_id", String(64), nullable=True),
    Column("agent", String(200), nullable=False),
    Column("started_at", Float, nullable=False),
)

review_votes = Table(
    "proctor_review_votes",
    metadata,
    Column("item_id", String(32), primary_key=True),
    Column("reviewer", String(200), primary_key=True),
    Column("vote", String(16), nullable=False),
    Column("note", Text, nullable=True),
    Column("at", Float, nullable=False),
)

tokens = Table(
    "proctor_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("queues", Text, nullable=True),  # JSON list; None: every queue
    Column("agents", Text, nullable=True),  # JSON list; None: every agent
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),  # 0007: None never expires
)

idempotency = Table(
    "proctor_idempotency",
    metadata,
    Column("principal", String(32), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("response", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    sqlite_with_rowid=False,
)
Index("ix_idempotency_created", idempotency.c.created_at)  # pruning old keys

controls = Table(
    "proctor_controls",
    metadata,
    Column("agent", String(200), primary_key=True),  # "*": every agent
    Column("killed", Boolean, nullable=False, server_default="0"),
    Column("reason", Text, nullable=True),
    Column("stage", Integer, nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200), nullable=True),
)

counters = Table(
    "proctor_counters",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("window_start", Float, nullable=False),
    Column("value", Float, nullable=False),
    sqlite_with_rowid=False,
)

alerts = Table(
    "proctor_alerts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("state", String(16), nullable=False),  # firing | ok
    Column("severity", String(16), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("value", Float, nullable=True),
    Column("threshold", Float, nullable=False),
    Column("since", Float, nullable=False),
    Column("checked_at", Float, nullable=False),
    Column("policy_version", String(64), nullable=True),
)

notifications = Table(
    "proctor_notifications",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("source", String(200), nullable=False),
    Column("target", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("next_at", Float, nullable=False),
    Column("sent_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
)
Index("ix_notifications_due", notifications.c.status, notifications.c.next_at)

# 0010: circuit breakers (execution/breakers.py), one row per agent/tool or */tool scope
breakers = Table(
    "proctor_breakers",
    metadata,
    Column("scope", String(420), primary_key=True),
    Column("agent", String(200), nullable=False),
    Column("tool", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("outcomes", Text, nullable=False, server_default=""),  # last calls: 0 ok, 1 failed
    Column("opened_at", Float, nullable=True),
    Column("trials", Integer, nullable=False, server_default="0"),
    Column("trial_failures", Integer, nullable=False, server_default="0"),
    Column("trial_done", Integer, nullable=False, server_default="0"),
    Column("escalated_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
)

# 0011: drift monitors (drift/): the stored reference and detector state of each monitor
# (``revision`` makes an update conditional, so two servers never both apply a round) and
# its statistic over time, one row per compared window
drift = Table(
    "proctor_drift",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("spec", String(64), nullable=False),  # digest of the monitor's policy entry
    Column("agent", String(200), nullable=False),
    Column("tool", String(200), nullable=True),
    Column("status", String(16), nullable=False),  # reference | watching | drift
    Column("cursor", BigInteger, nullable=False),  # the last log seq consumed
    Column("state", Text, nullable=False),
    Column("statistic", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("detected_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("revision", Integer, nullable=False, server_default="0"),
)

drift_points = Table(
    "proctor_drift_points",
    metadata,
    Column("monitor", String(200), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("ts", Float, nullable=False),
    Column("statistic", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("n", Integer, nullable=False),
    Column("detected", Boolean, nullable=False, server_default="0"),
)
