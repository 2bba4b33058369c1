"""The chain head moves with each appended record, in the database itself.

A trigger updates ``proctor_state`` as a record is inserted: one statement fewer per
record from the application (on PostgreSQL, one network round trip fewer per decision).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER proctor_chain_head AFTER INSERT ON proctor_audit_log BEGIN"
            " UPDATE proctor_state SET head_seq = NEW.seq, head_hash = NEW.hash WHERE id = 1;"
            " END"
        )
        return
    op.execute(
        "CREATE FUNCTION proctor_chain_head() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN UPDATE proctor_state SET head_seq = NEW.seq, head_hash = NEW.hash"
        " WHERE id = 1; RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER proctor_chain_head AFTER INSERT ON proctor_audit_log"
        " FOR EACH ROW EXECUTE FUNCTION proctor_chain_head()"
    )


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS proctor_chain_head"
        + ("" if op.get_bind().dialect.name == "sqlite" else " ON proctor_audit_log")
    )
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS proctor_chain_head()")
