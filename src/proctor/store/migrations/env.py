"""Alembic environment: Proctor always hands in the connection (see store.schema)."""

from alembic import context

from proctor.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="proctor_alembic_version",
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
