"""Review loop: grants, claims, votes for quorum, reviewer context, choices.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def new_columns() -> list[sa.Column[object]]:  # fresh objects: a Column belongs to one table
    return [
        sa.Column("sla_due", sa.Float, nullable=True),
        sa.Column("impact", sa.Float, nullable=True),
        sa.Column("quorum", sa.Integer, nullable=False, server_default="1"),
        sa.Column("params", sa.Text, nullable=True),  # the tool's parameter schema, for edits
        sa.Column("history", sa.Text, nullable=True),  # the run's earlier tool calls
        sa.Column("options", sa.Text, nullable=True),  # choice items: the ranked options
        sa.Column("chosen", sa.Integer, nullable=True),
        sa.Column("exec_args", sa.Text, nullable=True),  # exact args when nothing was masked
        sa.Column("edited_args", sa.Text, nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", sa.Float, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("escalated_from", sa.String(200), nullable=True),
        sa.Column("grant_digest", sa.String(64), nullable=True),
        sa.Column("grant_policy_version", sa.String(64), nullable=True),
        sa.Column("grant_expires_at", sa.Float, nullable=True),
        sa.Column("claim_owner", sa.String(200), nullable=True),
        sa.Column("claimed_at", sa.Float, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("result_error", sa.Text, nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("proctor_review_items") as batch:
        for column in new_columns():
            batch.add_column(column)
    op.create_table(
        "proctor_review_votes",
        sa.Column("item_id", sa.String(32), primary_key=True),
        sa.Column("reviewer", sa.String(200), primary_key=True),
        sa.Column("vote", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("proctor_review_votes")
    with op.batch_alter_table("proctor_review_items") as batch:
        for column in reversed(new_columns()):
            batch.drop_column(column.name)
