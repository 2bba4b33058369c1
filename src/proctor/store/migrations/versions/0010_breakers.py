"""Circuit breakers shared by every process on the database.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proctor_breakers",
        sa.Column("scope", sa.String(420), primary_key=True),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcomes", sa.Text, nullable=False, server_default=""),
        sa.Column("opened_at", sa.Float, nullable=True),
        sa.Column("trials", sa.Integer, nullable=False, server_default="0"),
        sa.Column("trial_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("trial_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("escalated_at", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("proctor_breakers")
