"""Inbox routes: inbound mail waiting for a handler (triage, quarantine), and a request's mail."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Query, Response
from sqlmodel import Session

from dsrflow import retention
from dsrflow.api.deps import (
    CurrentMessage,
    CurrentRequest,
    Decider,
    Offset,
    Reader,
    ReadSessionDep,
    RowId,
    RuntimeDep,
    SessionDep,
)
from dsrflow.api.problems import HANDLER_PROBLEMS as PROBLEMS
from dsrflow.errors import NotFound
from dsrflow.inbound_mail import repository, service, triage
from dsrflow.inbound_mail.schemas import (
    ConvertedPublic,
    ConvertIn,
    DismissIn,
    InboxItem,
    InboxMessage,
    InboxPage,
    Status,
)
from dsrflow.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["inbox"])
Item = TypeVar("Item", bound=InboxItem)


def with_art39(rt: Runtime, item: Item) -> Item:
    """The item with the Art. 39 date it would have as a request: its clock runs from arrival."""
    if not any(wf.deadline.art39 for wf in rt.definitions.workflows.values()):
        return item
    return item.model_copy(update={"art39_date": rt.calendar.art39_date(item.received_at)})


DECIDED: dict[int | str, dict[str, Any]] = {
    409: {"description": "The message is no longer waiting for a decision"}
}


@router.get("/inbox", response_model=InboxPage, responses=PROBLEMS, summary="Inbound mail")
def list_inbox(
    rt: RuntimeDep,
    session: ReadSessionDep,
    _: Reader,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> InboxPage:
    """Every inbound message, newest arrival first; ``status=triage`` (or ``quarantined``) is
    what waits for a handler."""
    rows, total = repository.search(session, status=status, limit=limit, offset=offset)
    return InboxPage(
        items=[with_art39(rt, item) for item in service.describe_items(session, rows)],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/inbox/{inbound_id}", response_model=InboxMessage, responses=PROBLEMS, summary="One message"
)
def get_message(
    message: CurrentMessage, rt: RuntimeDep, session: ReadSessionDep, _: Reader
) -> InboxMessage:
    return with_art39(rt, service.describe(session, message))


@router.get(
    "/inbox/{inbound_id}/raw",
    responses={**PROBLEMS, 200: {"content": {"message/rfc822": {}}}},
    response_class=Response,
    summary="The message exactly as received",
)
def get_raw(inbound_id: RowId, session: ReadSessionDep, _: Reader) -> Response:
    row = repository.get(session, inbound_id, with_raw=True)
    if row is None:
        raise NotFound("No such message.")
    return _download(row.raw, "message/rfc822", f"message-{inbound_id}.eml")


@router.get(
    "/inbox/{inbound_id}/attachments/{attachment_id}",
    responses={**PROBLEMS, 200: {"content": {"application/octet-stream": {}}}},
    response_class=Response,
    summary="An attachment of a message",
)
def get_inbox_attachment(
    inbound_id: RowId, attachment_id: RowId, session: ReadSessionDep, _: Reader
) -> Response:
    return _attachment(session, inbound_id, attachment_id)


@router.post(
    "/inbox/{inbound_id}/convert",
    response_model=ConvertedPublic,
    responses={**PROBLEMS, **DECIDED, 422: {"description": "Unknown type or unusable address"}},
    summary="Make a request of a triage message (its arrival time is kept)",
)
def convert_message(
    inbound_id: RowId, body: ConvertIn, rt: RuntimeDep, session: SessionDep, handler: Decider
) -> ConvertedPublic:
    row, request = triage.convert(rt, session, inbound_id, body, actor=f"handler:{handler.id}")
    return ConvertedPublic(
        message=service.describe(session, row),
        request_id=request.id,
        reference=request.reference,
        received_at=request.received_at,
        due_at=request.due_at,
    )


@router.post(
    "/inbox/{inbound_id}/dismiss",
    response_model=InboxMessage,
    responses={**PROBLEMS, **DECIDED},
    summary="Close a triage message with a note (and optionally a reply to its sender)",
)
def dismiss_message(
    inbound_id: RowId, body: DismissIn, rt: RuntimeDep, session: SessionDep, handler: Decider
) -> InboxMessage:
    row = triage.dismiss(
        rt, session, inbound_id, body.note, actor=f"handler:{handler.id}", reply=body.reply
    )
    return service.describe(session, row)


@router.get(
    "/requests/{request_id}/messages",
    response_model=list[InboxMessage],
    responses=PROBLEMS,
    summary="The mail of a request, oldest first",
)
def request_messages(
    request: CurrentRequest, session: ReadSessionDep, _: Reader
) -> list[InboxMessage]:
    return [service.describe(session, row) for row in repository.for_request(session, request.id)]


@router.get(
    "/requests/{request_id}/messages/{inbound_id}/attachments/{attachment_id}",
    responses={**PROBLEMS, 200: {"content": {"application/octet-stream": {}}}},
    response_class=Response,
    summary="An attachment of a request's message",
)
def get_request_attachment(
    request: CurrentRequest,
    message: CurrentMessage,
    attachment_id: RowId,
    session: ReadSessionDep,
    _: Reader,
) -> Response:
    if message.request_id != request.id:
        raise NotFound("No such message for this request.")
    assert message.id is not None
    return _attachment(session, message.id, attachment_id)


@router.post(
    "/inbox/{inbound_id}/attachments/{attachment_id}/my-number",
    status_code=204,
    response_class=Response,
    responses=PROBLEMS,
    summary="Mark an attachment as an Individual Number card: it is erased at once",
)
def erase_my_number(
    inbound_id: RowId, attachment_id: RowId, rt: RuntimeDep, session: SessionDep, handler: Decider
) -> Response:
    """Erases the attachment's content and the raw message that carries it (My Number Act
    Art. 20); the message's words and the attachment's description and hash stay. Audited on
    the message's request."""
    retention.erase_my_number(rt, session, inbound_id, attachment_id, actor=f"handler:{handler.id}")
    return Response(status_code=204)


def _attachment(session: Session, inbound_id: int, attachment_id: int) -> Response:
    attachment = repository.attachment(session, inbound_id, attachment_id)
    if attachment is None:
        raise NotFound("No such attachment.")
    if attachment.erased_at is not None:
        raise NotFound(f"This attachment was erased ({attachment.erased_reason}).")
    if attachment.content is None:
        raise NotFound(
            "This attachment was over the size or count limit and is not kept on its own; "
            f"it is in the raw message (/api/v1/inbox/{inbound_id}/raw).",
        )
    name = attachment.filename or f"attachment-{attachment_id}"
    return _download(attachment.content, attachment.content_type, name)


def _download(content: bytes, content_type: str, filename: str) -> Response:
    # Always a download, never rendered: an attached HTML file must not run in the API's origin.
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return Response(
        content=content,
        media_type=content_type if "/" in content_type else "application/octet-stream",
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
            ),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )
