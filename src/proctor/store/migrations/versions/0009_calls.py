"""Call identities and runs: exactly-once for allowed calls, holds across processes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proctor_calls",
        sa.Column(
            "n",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("args_digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("decision_id", sa.String(32), nullable=True),
        sa.Column("decision_seq", sa.BigInteger, nullable=True),
        sa.Column("item_id", sa.String(32), nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("result_error", sa.Text, nullable=True),
        sa.Column("claim_token", sa.String(64), nullable=True),
        sa.Column("claim_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("retried", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("seqs", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    # The id (a digest of agent, tool and key) finds a call; rows are in the order calls
    # were first decided, and the sweeper walks new ones from a mark: no status index
    # that every call would pay to keep.
    op.create_index("ix_calls_id", "proctor_calls", ["id"], unique=True)
    op.create_table(
        "proctor_calls_open",
        sa.Column("n", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_table(
        "proctor_sweep_marks",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("mark", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "proctor_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
    )
    op.add_column(
        "proctor_review_items",
        sa.Column("hold_run", sa.Boolean, nullable=False, server_default="1"),
    )
    op.add_column("proctor_review_items", sa.Column("on_reject", sa.String(24), nullable=True))
    op.add_column("proctor_review_items", sa.Column("call_id", sa.String(32), nullable=True))
    op.create_index("ix_review_run", "proctor_review_items", ["run_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_review_run", table_name="proctor_review_items")
    with op.batch_alter_table("proctor_review_items") as batch:
        batch.drop_column("call_id")
        batch.drop_column("on_reject")
        batch.drop_column("hold_run")
    op.drop_table("proctor_runs")
    op.drop_table("proctor_sweep_marks")
    op.drop_table("proctor_calls_open")
    op.drop_index("ix_calls_id", table_name="proctor_calls")
    op.drop_table("proctor_calls")
