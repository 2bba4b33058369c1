"""Hardening: claim leases and claim tokens, token expiry, the log's record format.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild): the log may hold millions of rows, and SQLite adds
    # a column with a constant default without rewriting them.
    op.add_column(
        "proctor_audit_log",
        sa.Column("fmt", sa.SmallInteger, nullable=False, server_default="1"),
    )
    op.add_column("proctor_review_items", sa.Column("lease_expires_at", sa.Float, nullable=True))
    op.add_column("proctor_review_items", sa.Column("claim_token", sa.String(64), nullable=True))
    op.add_column("proctor_tokens", sa.Column("expires_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("proctor_tokens") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("proctor_review_items") as batch:
        batch.drop_column("claim_token")
        batch.drop_column("lease_expires_at")
    with op.batch_alter_table("proctor_audit_log") as batch:
        batch.drop_column("fmt")
