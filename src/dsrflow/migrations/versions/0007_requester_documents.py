"""requester documents uploaded from the status page

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 20:40:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import dsrflow.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requester_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("uploaded_at", dsrflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("removed_at", dsrflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("removed_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("requester_documents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_requester_documents_request_id"), ["request_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("requester_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requester_documents_request_id"))
    op.drop_table("requester_documents")
