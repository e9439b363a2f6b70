"""Handlers' view of the documents requesters uploaded: list, download (audited), discard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from dsrflow.api.deps import CurrentRequest, Decider, Reader, SessionDep
from dsrflow.api.inbox import _download
from dsrflow.api.problems import HANDLER_PROBLEMS as PROBLEMS
from dsrflow.documents import repository, service
from dsrflow.documents.schemas import DocumentDiscardIn, DocumentPublic

router = APIRouter(prefix="/api/v1/requests", tags=["documents"])
DocumentId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get(
    "/{request_id}/documents",
    response_model=list[DocumentPublic],
    responses=PROBLEMS,
    summary="Identity and authority documents the requester uploaded",
)
def list_documents(request: CurrentRequest, session: SessionDep, _: Reader) -> list[DocumentPublic]:
    return [DocumentPublic.model_validate(d) for d in repository.for_request(session, request.id)]


@router.get(
    "/{request_id}/documents/{document_id}",
    responses={**PROBLEMS, 200: {"description": "The file (always a download)"}},
    summary="Download one document (recorded in the request's audit chain)",
)
def get_document(
    request: CurrentRequest, document_id: DocumentId, session: SessionDep, handler: Reader
) -> Response:
    document = service.view(session, request.id, document_id, actor=f"handler:{handler.id}")
    assert document.content is not None
    return _download(document.content, document.content_type, document.filename)


@router.post(
    "/{request_id}/documents/{document_id}/discard",
    response_model=DocumentPublic,
    responses=PROBLEMS,
    summary="Delete a document's file now (e.g. the back of a My Number card); audited",
)
def discard_document(
    request: CurrentRequest,
    document_id: DocumentId,
    body: DocumentDiscardIn,
    session: SessionDep,
    handler: Decider,
) -> DocumentPublic:
    document = service.discard(
        session, request.id, document_id, reason=body.reason, actor=f"handler:{handler.id}"
    )
    return DocumentPublic.model_validate(document)
