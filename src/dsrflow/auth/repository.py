"""Handler queries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from dsrflow.auth.models import ConsoleSession, Handler
from dsrflow.auth.tokens import token_digest

# Built once: every handler call runs it, and a statement built per call costs more than its
# execution (SQLAlchemy derives a cache key from each new statement object).
_BY_TOKEN = select(Handler).where(Handler.token_hash == bindparam("token_hash"))


def handler_by_token(session: Session, token: str) -> Handler | None:
    handler = session.exec(_BY_TOKEN, params={"token_hash": token_digest(token)}).first()
    return handler if handler and handler.revoked_at is None else None


def list_handlers(session: Session) -> list[Handler]:
    return list(session.exec(select(Handler).order_by(col(Handler.id))))


def active_handlers(session: Session) -> list[Handler]:
    """Handlers whose token is not revoked, by name (the console's assignee choices)."""
    return list(
        session.exec(
            select(Handler).where(col(Handler.revoked_at).is_(None)).order_by(col(Handler.name))
        )
    )


def handler_by_session(session: Session, session_hash: str, now: datetime) -> Handler | None:
    """The handler of a live console session: not ended, not expired, token not revoked."""
    return session.exec(
        select(Handler)
        .join(ConsoleSession, col(ConsoleSession.handler_id) == col(Handler.id))
        .where(
            ConsoleSession.session_hash == session_hash,
            col(ConsoleSession.ended_at).is_(None),
            col(ConsoleSession.expires_at) > now,
            col(Handler.revoked_at).is_(None),
        )
    ).first()


def console_session(session: Session, session_hash: str) -> ConsoleSession | None:
    return session.exec(
        select(ConsoleSession).where(ConsoleSession.session_hash == session_hash)
    ).first()
