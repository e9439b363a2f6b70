"""APPI substance: identity evidence, agent authority, the disclosure method used, fee payments

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:45:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from dsrflow.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity_evidence", _STR(length=2000), nullable=True))
        batch_op.add_column(sa.Column("authority_document", _STR(length=64), nullable=True))
        batch_op.add_column(sa.Column("agent_identity_method", _STR(length=64), nullable=True))
        batch_op.add_column(sa.Column("disclosure_method_used", _STR(length=64), nullable=True))
        batch_op.alter_column(
            "disclosure_method",
            existing_type=_STR(length=16),
            type_=_STR(length=64),
            existing_nullable=True,
        )
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", _STR(length=32), nullable=False),
        sa.Column("amount_jpy", sa.Integer(), nullable=False),
        sa.Column("method", _STR(length=64), nullable=False),
        sa.Column("paid_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("note", _STR(length=2000), nullable=True),
        sa.Column("recorded_by", _STR(length=64), nullable=False),
        sa.Column("recorded_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_payments_request_id", "payments", ["request_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_payments_request_id", table_name="payments")
    op.drop_table("payments")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.alter_column(
            "disclosure_method",
            existing_type=_STR(length=64),
            type_=_STR(length=16),
            existing_nullable=True,
        )
        batch_op.drop_column("disclosure_method_used")
        batch_op.drop_column("agent_identity_method")
        batch_op.drop_column("authority_document")
        batch_op.drop_column("identity_evidence")
