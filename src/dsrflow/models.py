"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from dsrflow.audit.models import AuditHead, Event
from dsrflow.auth.models import ConsoleSession, Handler
from dsrflow.documents.models import RequesterDocument
from dsrflow.inbound_mail.models import ImapSyncState, InboundAttachment, InboundMessage
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import (
    Payment,
    ReferenceCounter,
    Request,
    RequestNote,
    VerificationToken,
)

__all__ = [
    "AuditHead",
    "ConsoleSession",
    "Event",
    "Handler",
    "ImapSyncState",
    "InboundAttachment",
    "InboundMessage",
    "OutboxMessage",
    "Payment",
    "ReferenceCounter",
    "Request",
    "RequestNote",
    "RequesterDocument",
    "VerificationToken",
]
