"""Every query on requester documents. Nothing here commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from dsrflow.documents.models import RequesterDocument
from dsrflow.requests.models import Request


def for_request(session: Session, request_id: str) -> list[RequesterDocument]:
    return list(
        session.exec(
            select(RequesterDocument)
            .where(RequesterDocument.request_id == request_id)
            .order_by(col(RequesterDocument.id))
        )
    )


def get(session: Session, request_id: str, document_id: int) -> RequesterDocument | None:
    document = session.get(RequesterDocument, document_id)
    return document if document is not None and document.request_id == request_id else None


def count_for_request(session: Session, request_id: str) -> int:
    return int(
        session.exec(
            select(func.count()).where(col(RequesterDocument.request_id) == request_id)
        ).one()
    )


def kept_of_requests_closed_before(session: Session, cutoff: datetime) -> list[RequesterDocument]:
    """Documents still held whose request closed before ``cutoff``."""
    return list(
        session.exec(
            select(RequesterDocument)
            .join(Request, col(Request.id) == col(RequesterDocument.request_id))
            .where(
                col(RequesterDocument.content).is_not(None),
                col(Request.closed_at).is_not(None),
                col(Request.closed_at) < cutoff,
            )
        )
    )


def remove_content(session: Session, document_id: int, at: datetime, reason: str) -> bool:
    """Drop the file, keep the record; False when it was already gone."""
    result = session.execute(
        update(RequesterDocument)
        .where(
            col(RequesterDocument.id) == document_id, col(RequesterDocument.content).is_not(None)
        )
        .values(content=None, removed_at=at, removed_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]
