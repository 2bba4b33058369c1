"""Runtime controls: kill switch and stage overrides, shadow policy, limit counters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("proctor_state") as batch:
        batch.add_column(
            sa.Column("controls_epoch", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("shadow_version", sa.String(64), nullable=True))
    op.create_table(
        "proctor_controls",
        sa.Column("agent", sa.String(200), primary_key=True),  # "*": every agent
        sa.Column("killed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("stage", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=True),
    )
    op.create_table(
        "proctor_counters",
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("window_start", sa.Float, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("proctor_counters")
    op.drop_table("proctor_controls")
    with op.batch_alter_table("proctor_state") as batch:
        batch.drop_column("shadow_version")
        batch.drop_column("controls_epoch")
