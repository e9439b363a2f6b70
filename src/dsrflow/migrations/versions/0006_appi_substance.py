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


# Plain ADD/DROP COLUMN (SQLite 3.35+ has both): a batch rebuild of ``requests`` would drop a
# table that other tables' rows reference, which SQLite refuses.
REQUEST_COLUMNS = (
    ("identity_evidence", 2000),
    ("authority_document", 64),
    ("agent_identity_method", 64),
    ("disclosure_method_used", 64),
)


def upgrade() -> None:
    for name, length in REQUEST_COLUMNS:
        op.add_column("requests", sa.Column(name, _STR(length=length), nullable=True))
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
    for name, _ in reversed(REQUEST_COLUMNS):
        op.drop_column("requests", name)
