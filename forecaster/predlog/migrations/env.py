"""Alembic environment: always run in-process with the connection `migrate.upgrade` passes."""

from __future__ import annotations

from alembic import context

from forecaster.predlog.migrate import VERSION_TABLE
from forecaster.predlog.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
