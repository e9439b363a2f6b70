"""Handler queries."""

from __future__ import annotations

from sqlmodel import Session, col, select

from dsrflow.auth.models import Handler
from dsrflow.auth.tokens import token_digest


def handler_by_token(session: Session, token: str) -> Handler | None:
    handler = session.exec(select(Handler).where(Handler.token_hash == token_digest(token))).first()
    return handler if handler and handler.revoked_at is None else None


def list_handlers(session: Session) -> list[Handler]:
    return list(session.exec(select(Handler).order_by(col(Handler.id))))
