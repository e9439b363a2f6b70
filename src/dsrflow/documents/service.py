"""Requester documents: upload from the status page, handlers' view and discard, retention.

Only JPEG, PNG and PDF are taken, recognised by their first bytes (the declared type and the
file name are not believed). Every upload, view and removal is an audit event of the request.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
from datetime import datetime, timedelta

from sqlmodel import Session

from dsrflow.audit.chain import append_event
from dsrflow.auth.tokens import token_digest
from dsrflow.db import utcnow
from dsrflow.documents import repository
from dsrflow.documents.models import RequesterDocument
from dsrflow.errors import Conflict, Invalid, NotFound
from dsrflow.requests import repository as requests
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)
KINDS = ("identity", "authority")
# Why a handler removes a file: the back of a My Number card (its individual number must not
# be collected, My Number Act Art. 20), or a file that is not needed.
DISCARD_REASONS = ("my_number_back", "not_needed")
SIGNATURES = {
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"%PDF-": "application/pdf",
}


def content_type_of(content: bytes) -> str | None:
    return next((kind for magic, kind in SIGNATURES.items() if content.startswith(magic)), None)


def clean_filename(name: str) -> str:
    base = os.path.basename(name.replace("\\", "/"))
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return base[:255] or "document"


def upload(
    rt: Runtime, session: Session, status_token: str, *, kind: str, filename: str, content: bytes
) -> RequesterDocument:
    """Keep one document for the request behind ``status_token``, audited, and commit.

    Raises NotFound (no such link), Conflict (the request is closed) or Invalid (``file``:
    empty, too large, not JPEG/PNG/PDF, one too many; ``kind``: not identity/authority).
    """
    request = requests.by_status_token(session, token_digest(status_token))
    if request is None:
        raise NotFound("No such request.")
    if request.state in rt.definitions.workflow(request.type).terminal_states:
        raise Conflict("The request is closed.", state=request.state)
    if kind not in KINDS:
        raise Invalid({"kind": f"one of {list(KINDS)}"})
    content_type = content_type_of(content)
    if not content:
        raise Invalid({"file": "empty"})
    if len(content) > rt.settings.max_upload_bytes:
        raise Invalid({"file": "too_large"})
    if content_type is None:
        raise Invalid({"file": "type"})
    if repository.count_for_request(session, request.id) >= rt.settings.max_documents_per_request:
        raise Invalid({"file": "too_many"})
    now = utcnow()
    document = RequesterDocument(
        request_id=request.id,
        kind=kind,
        filename=clean_filename(filename),
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
        uploaded_at=now,
    )
    session.add(document)
    session.flush()
    append_event(
        session,
        request.id,
        kind="document_uploaded",
        actor="requester",
        at=now,
        detail={
            "document_id": document.id,
            "kind": kind,
            "content_type": content_type,
            "size": len(content),
            "sha256": document.sha256,
        },
    )
    session.commit()
    log.info("document uploaded for %s (%s, %d bytes)", request.reference, kind, len(content))
    return document


def view(session: Session, request_id: str, document_id: int, *, actor: str) -> RequesterDocument:
    """A handler opens a document: recorded in the request's audit chain."""
    document = repository.get(session, request_id, document_id)
    if document is None:
        raise NotFound("No such document.")
    if document.content is None:
        raise NotFound(f"This document was removed ({document.removed_reason}).")
    append_event(
        session,
        request_id,
        kind="document_viewed",
        actor=actor,
        at=utcnow(),
        detail={"document_id": document_id},
    )
    session.commit()
    return document


def discard(
    session: Session, request_id: str, document_id: int, *, reason: str, actor: str
) -> RequesterDocument:
    """A handler removes a document's file at once (the record stays), audited."""
    if reason not in DISCARD_REASONS:
        raise Invalid({"reason": f"one of {list(DISCARD_REASONS)}"})
    document = repository.get(session, request_id, document_id)
    if document is None:
        raise NotFound("No such document.")
    _remove(session, document, reason=reason, actor=actor, at=utcnow())
    session.commit()
    session.refresh(document)
    return document


def purge_expired(rt: Runtime, session: Session, now: datetime | None = None) -> int:
    """Remove the files of requests closed longer than DOCUMENT_RETENTION_DAYS_AFTER_CLOSE ago;
    returns how many. Run by the scheduler."""
    now = now or utcnow()
    cutoff = now - timedelta(days=rt.settings.document_retention_days_after_close)
    removed = 0
    for document in repository.kept_of_requests_closed_before(session, cutoff):
        removed += _remove(session, document, reason="retention", actor="system", at=now)
    session.commit()
    return removed


def _remove(
    session: Session, document: RequesterDocument, *, reason: str, actor: str, at: datetime
) -> bool:
    assert document.id is not None
    if not repository.remove_content(session, document.id, at, reason):
        return False
    append_event(
        session,
        document.request_id,
        kind="document_removed",
        actor=actor,
        at=at,
        detail={"document_id": document.id, "reason": reason},
    )
    return True
