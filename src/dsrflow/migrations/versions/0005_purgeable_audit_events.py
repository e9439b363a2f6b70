"""purgeable audit events, purge marks

Events get format 2: the chain hashes a salted digest of each detail value instead of the
value, so that purge can erase personal data without breaking ``audit verify``. Every existing
chain that verifies is resealed in format 2 (the same events, rehashed); a chain that does not
verify is left in format 1, so ``audit verify`` still reports its break.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:00:00
"""

import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(f"{prev_hash}\n{_canonical(fields)}".encode()).hexdigest()


def _at(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def _fields(row: Any, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": row.request_id,
        "seq": row.seq,
        "kind": row.kind,
        "trigger": row.trigger,
        "from_state": row.from_state,
        "to_state": row.to_state,
        "actor": row.actor,
        "at": _at(row.at),
    }


def _detail(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("format", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("detail_digest", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("detail_salts", sa.JSON(), nullable=True))
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_purged_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("inbound_attachments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("erased_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
    _reseal(op.get_bind())


def _reseal(bind: Any) -> None:
    events = sa.table(
        "events",
        sa.column("id"),
        sa.column("request_id"),
        sa.column("seq"),
        sa.column("kind"),
        sa.column("trigger"),
        sa.column("from_state"),
        sa.column("to_state"),
        sa.column("actor"),
        sa.column("at"),
        sa.column("detail"),
        sa.column("format"),
        sa.column("detail_digest", sa.JSON()),
        sa.column("detail_salts", sa.JSON()),
        sa.column("prev_hash"),
        sa.column("hash"),
    )
    heads = sa.table("audit_heads", sa.column("request_id"), sa.column("seq"), sa.column("hash"))
    head_of = {r.request_id: (r.seq, r.hash) for r in bind.execute(sa.select(heads))}
    rows = bind.execute(sa.select(events).order_by(events.c.request_id, events.c.seq)).all()
    chains: dict[str, list[Any]] = {}
    for row in rows:
        chains.setdefault(row.request_id, []).append(row)
    for request_id, chain in chains.items():
        # Only a chain that verifies in format 1, head included, is resealed.
        prev, intact = GENESIS, True
        for expected, row in enumerate(chain, start=1):
            fields = {**_fields(row, {}), "detail": _detail(row.detail)}
            if row.seq != expected or row.prev_hash != prev or _hash(prev, fields) != row.hash:
                intact = False
                break
            prev = row.hash
        if not intact or head_of.get(request_id) != (chain[-1].seq, chain[-1].hash):
            continue
        prev = GENESIS
        for row in chain:
            detail = _detail(row.detail)
            salts = {key: secrets.token_hex(16) for key in detail}
            digests = {
                key: hashlib.sha256(f"{salts[key]}\n{key}\n{_canonical(v)}".encode()).hexdigest()
                for key, v in detail.items()
            }
            fields = {**_fields(row, detail), "format": 2, "detail_digest": digests}
            new_hash = _hash(prev, fields)
            bind.execute(
                events.update()
                .where(events.c.id == row.id)
                .values(
                    format=2,
                    detail_digest=digests,
                    detail_salts=salts,
                    prev_hash=prev,
                    hash=new_hash,
                )
            )
            prev = new_hash
        bind.execute(heads.update().where(heads.c.request_id == request_id).values(hash=prev))


def downgrade() -> None:
    with op.batch_alter_table("inbound_attachments", schema=None) as batch_op:
        batch_op.drop_column("erased_reason")
        batch_op.drop_column("erased_at")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_column("raw_purged_at")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("detail_salts")
        batch_op.drop_column("detail_digest")
        batch_op.drop_column("format")
