"""Handler management: the only place that writes handlers."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from dsrflow.auth import repository
from dsrflow.auth.models import ConsoleSession, Handler
from dsrflow.auth.tokens import ROLES, new_token, token_digest
from dsrflow.db import utcnow


def add_handler(session: Session, name: str, email: str, role: str) -> tuple[Handler, str]:
    """Create a handler; return it with its token, which is shown once and stored hashed."""
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}'; one of {', '.join(ROLES)}")
    token = new_token("dsr")
    handler = Handler(name=name, email=email, role=role, token_hash=token_digest(token))
    session.add(handler)
    session.commit()
    return handler, token


def revoke_handler(session: Session, handler_id: int) -> Handler | None:
    handler = session.get(Handler, handler_id)
    if handler is not None and handler.revoked_at is None:
        handler.revoked_at = utcnow()
        session.add(handler)
        session.commit()
    return handler


def start_console_session(session: Session, token: str, hours: int) -> tuple[Handler, str] | None:
    """Sign a handler in with their token; return them with a new session id (for the cookie;
    stored hashed), or None when the token is unknown or revoked. Commits."""
    handler = repository.handler_by_token(session, token)
    if handler is None or handler.id is None:
        session.rollback()
        return None
    session_id = new_token("cs")
    now = utcnow()
    session.add(
        ConsoleSession(
            session_hash=token_digest(session_id),
            handler_id=handler.id,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    session.commit()
    return handler, session_id


def end_console_session(session: Session, session_id: str) -> None:
    """Log out: the session id no longer opens anything. Commits."""
    row = repository.console_session(session, token_digest(session_id))
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()
        session.add(row)
        session.commit()
