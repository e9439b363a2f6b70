"""Migrations: they build exactly the models' schema, and bring older databases up to date."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import dsrflow.models  # noqa: F401
from dsrflow.db import alembic_config, make_engine, migrate


def test_migrations_match_the_models(db: Engine) -> None:
    with db.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []


def test_an_old_database_is_brought_up_to_date(backend: str, database_url: str, db: Engine) -> None:
    # Start from an empty database migrated only to the first revision.
    script = ScriptDirectory.from_config(alembic_config(db))
    head = script.get_current_head()
    fresh = make_engine(database_url)
    with fresh.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")
        connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    command.upgrade(alembic_config(fresh), "0001")
    with fresh.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0001"
    migrate(fresh)  # what `dsrflow serve` does at start
    with fresh.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head
    migrate(fresh)  # and again: a no-op
    fresh.dispose()
