"""Alembic environment. Run through `registry.Database.migrate()` (which passes a connection), never by hand:
`hallmark init` is the one command that creates or upgrades a schema, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import registry  # noqa: F401  (imports every table module, so the metadata is complete)

target_metadata = SQLModel.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through registry.Database.migrate() (or `hallmark init`).")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
