"""console: sessions, internal notes, assignment and "last seen by a handler"

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 20:40:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import dsrflow.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("handler_id", sa.Integer(), nullable=False),
        sa.Column("created_at", dsrflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", dsrflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", dsrflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["handler_id"], ["handlers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_hash"),
    )
    op.create_index(
        op.f("ix_console_sessions_handler_id"), "console_sessions", ["handler_id"], unique=False
    )
    op.create_table(
        "request_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("handler_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", dsrflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["handler_id"], ["handlers.id"]),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_request_notes_request_id"), "request_notes", ["request_id"], unique=False
    )
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("handler_seen_at", dsrflow.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_requests_assignee_id"), ["assignee_id"], unique=False)
        batch_op.create_foreign_key("fk_requests_assignee_id", "handlers", ["assignee_id"], ["id"])
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_inbound_messages_assignee_id", "handlers", ["assignee_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_inbound_messages_assignee_id", type_="foreignkey")
        batch_op.drop_column("assignee_id")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_constraint("fk_requests_assignee_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_requests_assignee_id"))
        batch_op.drop_column("handler_seen_at")
        batch_op.drop_column("assignee_id")
    op.drop_index(op.f("ix_request_notes_request_id"), table_name="request_notes")
    op.drop_table("request_notes")
    op.drop_index(op.f("ix_console_sessions_handler_id"), table_name="console_sessions")
    op.drop_table("console_sessions")
