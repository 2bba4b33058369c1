"""Server: API tokens (stored as hashes) and idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proctor_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("queues", sa.Text, nullable=True),
        sa.Column("agents", sa.Text, nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_table(
        "proctor_idempotency",
        sa.Column("principal", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sqlite_with_rowid=False,  # one B-tree, not a table plus a key index
    )
    op.create_index("ix_idempotency_created", "proctor_idempotency", ["created_at"])


def downgrade() -> None:
    op.drop_table("proctor_idempotency")
    op.drop_table("proctor_tokens")
