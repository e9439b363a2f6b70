"""Handler management: the only place that writes handlers."""

from __future__ import annotations

from sqlmodel import Session

from dsrflow.auth.models import Handler
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
