"""Alembic environment: runs on the connection (or engine) dsrflow hands over (db.migrate)."""

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import dsrflow.models  # noqa: F401  (registers every table on the metadata)

config = context.config


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


# db.migrate hands over the connection that holds the migration lock; run in its transaction.
given = config.attributes.get("connection")
if given is not None:
    run(given)
else:
    engine = config.attributes.get("engine")
    if engine is None:
        from dsrflow.config import get_settings
        from dsrflow.db import make_engine

        engine = make_engine(get_settings().resolved_database_url)
    with engine.connect() as connection:
        run(connection)
        connection.commit()
