"""inbound mail: messages, attachments, IMAP sync state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 05:54:12.495144
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import dsrflow.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imap_sync_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("claimed_until", dsrflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_polled_at", dsrflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", dsrflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox"),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("from_address", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("from_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=998), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("detected_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("in_reply_to", sa.Text(), nullable=True),
        sa.Column("references", sa.Text(), nullable=True),
        sa.Column("received_at", dsrflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at_source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False
        ),
        sa.Column("date_header", dsrflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("raw_size", sa.Integer(), nullable=False),
        sa.Column("raw_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("imap_mailbox", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("imap_uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("imap_uid", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("decided_at", dsrflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", dsrflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_request_id"), ["request_id"], unique=False
        )
        batch_op.create_index(
            "ix_inbound_messages_status_received_at", ["status", "received_at"], unique=False
        )

    op.create_table(
        "inbound_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inbound_message_id", sa.Integer(), nullable=False),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inbound_message_id"],
            ["inbound_messages.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("inbound_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbound_attachments_inbound_message_id"),
            ["inbound_message_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_attachments_inbound_message_id"))

    op.drop_table("inbound_attachments")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_messages_status_received_at")
        batch_op.drop_index(batch_op.f("ix_inbound_messages_request_id"))

    op.drop_table("inbound_messages")
    op.drop_table("imap_sync_state")
