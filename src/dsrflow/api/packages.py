"""Disclosure package routes: a handler attaches the files of a fulfilment (multipart), lists
and revokes them. The requester downloads them from the status page, never by mail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from dsrflow.api.deps import (
    CurrentRequest,
    Decider,
    Reader,
    ReadSessionDep,
    RuntimeDep,
    SessionDep,
)
from dsrflow.api.problems import HANDLER_PROBLEMS as PROBLEMS
from dsrflow.packages import service
from dsrflow.packages.schemas import IncomingFile, PackagePublic

router = APIRouter(prefix="/api/v1/requests", tags=["packages"])


@router.post(
    "/{request_id}/packages",
    status_code=201,
    response_model=PackagePublic,
    responses={
        **PROBLEMS,
        409: {"description": "The request is not at fulfilment (not verified, or closed)"},
        413: {"description": "The files exceed DSRFLOW_PACKAGE_MAX_BYTES"},
        422: {"description": "No file, too many, an empty one, or a bad expiry or limit"},
    },
    summary="Attach a disclosure package (multipart `files`) for the requester to download",
)
async def attach_package(
    request: CurrentRequest,
    rt: RuntimeDep,
    session: SessionDep,
    handler: Decider,
    files: Annotated[list[UploadFile], File(description="One or more files.")],
    expires_in_days: Annotated[int | None, Form()] = None,
    max_downloads: Annotated[int | None, Form()] = None,
) -> PackagePublic:
    """The files are stored with their size and SHA-256; the status page offers them until
    the link expires (default DSRFLOW_PACKAGE_EXPIRY_DAYS) and at most ``max_downloads``
    times each (default DSRFLOW_PACKAGE_MAX_DOWNLOADS). The requester is told by mail,
    without the files."""
    incoming = [
        IncomingFile(f.filename or "file", f.content_type or "application/octet-stream", f.file)
        for f in files
    ]
    package = await run_in_threadpool(
        service.attach,
        rt,
        session,
        request.id,
        incoming,
        actor=f"handler:{handler.id}",
        expires_in_days=expires_in_days,
        max_downloads=max_downloads,
    )
    return next(p for p in service.describe(rt, session, request) if p.id == package.id)


@router.get(
    "/{request_id}/packages",
    response_model=list[PackagePublic],
    responses=PROBLEMS,
    summary="A request's disclosure packages, newest first",
)
def list_packages(
    request: CurrentRequest, rt: RuntimeDep, session: ReadSessionDep, _: Reader
) -> list[PackagePublic]:
    return service.describe(rt, session, request)


@router.delete(
    "/{request_id}/packages/{package_id}",
    response_model=PackagePublic,
    responses={**PROBLEMS, 409: {"description": "Already removed"}},
    summary="Revoke a package: its files are deleted and its links stop working",
)
def revoke_package(
    package_id: str, request: CurrentRequest, rt: RuntimeDep, session: SessionDep, handler: Decider
) -> PackagePublic:
    service.revoke(rt, session, request.id, package_id, actor=f"handler:{handler.id}")
    return next(p for p in service.describe(rt, session, request) if p.id == package_id)
