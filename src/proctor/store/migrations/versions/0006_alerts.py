"""Alerts and notifications: alert states, a notification outbox, SLA breach marks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("proctor_review_items") as batch:
        batch.add_column(sa.Column("sla_breached_at", sa.Float, nullable=True))
    op.create_table(
        "proctor_alerts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),  # firing | ok
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("since", sa.Float, nullable=False),  # when the state began
        sa.Column("checked_at", sa.Float, nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=True),
    )
    op.create_table(
        "proctor_notifications",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),  # alert:<id> | sla:<item>
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("url", sa.Text, nullable=False),  # as written: ${VAR} expanded at send time
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # pending | sent | failed
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_notifications_due", "proctor_notifications", ["status", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_notifications_due", table_name="proctor_notifications")
    op.drop_table("proctor_notifications")
    op.drop_table("proctor_alerts")
    with op.batch_alter_table("proctor_review_items") as batch:
        batch.drop_column("sla_breached_at")
