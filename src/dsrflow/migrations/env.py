"""Alembic environment: runs against the engine dsrflow hands over (see db.migrate)."""

from alembic import context
from sqlmodel import SQLModel

import dsrflow.models  # noqa: F401  (registers every table on the metadata)

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    from dsrflow.config import get_settings
    from dsrflow.db import make_engine

    engine = make_engine(get_settings().resolved_database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
