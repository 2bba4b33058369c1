"""Drop the audit log's time index: it cost a page write on every decision's commit, and
nothing on a hot path reads by time (the console reads newest-first with a limit).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_audit_ts", table_name="proctor_audit_log")


def downgrade() -> None:
    op.create_index("ix_audit_ts", "proctor_audit_log", ["ts"])
