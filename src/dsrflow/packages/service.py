"""Disclosure packages: the files a handler attaches on fulfilment, offered to the requester on
the status page through links that expire, each file downloadable a limited number of times.

Files are stored under ``PACKAGES_DIR/<package id>/<file id>`` (never under the name given),
with their size and SHA-256 recorded; the package's total size is capped. Attaching, every
download and every removal are audited in the request's hash chain (ids, sizes and hashes only:
the chain is permanent and holds no file names). Files are deleted when the link expires (the
scheduler's ``package_sweep``), when a handler revokes the package, or when the request is
purged (``remove_for_request``). Nothing is ever sent as a mail attachment.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path, PurePath

from sqlmodel import Session

from dsrflow.audit.chain import append_event
from dsrflow.auth.tokens import token_digest
from dsrflow.db import utcnow
from dsrflow.errors import Conflict, Gone, Invalid, NotFound, PayloadTooLarge
from dsrflow.packages import repository
from dsrflow.packages.models import DisclosurePackage, PackageFile
from dsrflow.packages.schemas import (
    IncomingFile,
    PackageFilePublic,
    PackagePublic,
    PackageSweepReport,
)
from dsrflow.requests import repository as requests_repository
from dsrflow.requests.letters import letter_context, queue_letter
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)
READY_LETTER = "package_ready"
CHUNK = 1024 * 1024
FULFILLED_STATE = "fulfilled"


def _directory(rt: Runtime, package_id: str) -> Path:
    return rt.settings.resolved_packages_dir / package_id


def safe_filename(name: str) -> str:
    """The name a requester's browser is offered: the last path part, no control characters,
    at most 255 characters; never empty."""
    name = unicodedata.normalize("NFC", PurePath(name.replace("\\", "/")).name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    return name[:255] or "file"


def may_attach(rt: Runtime, request: Request) -> bool:
    """A package goes with a fulfilment: the request can be fulfilled now, or has been."""
    allowed = rt.engine.allowed_triggers(request.type, request.state)
    return "fulfill" in allowed or request.state == FULFILLED_STATE


def attach(
    rt: Runtime,
    session: Session,
    request_id: str,
    files: list[IncomingFile],
    *,
    actor: str,
    expires_in_days: int | None = None,
    max_downloads: int | None = None,
) -> DisclosurePackage:
    """Store ``files`` as one package of the request, audit it, queue the requester's notice
    (with no attachment and no link: the status page offers the files), and commit.

    Raises NotFound, Conflict (the request is not at fulfilment), Invalid (no file, too many,
    an empty file, a bad expiry or limit) or PayloadTooLarge (over ``PACKAGE_MAX_BYTES``).
    """
    s = rt.settings
    # The request's row lock before its event, as every writer of events takes it.
    request = requests_repository.lock(session, request_id)
    if request is None:
        raise NotFound("No such request.")
    if not may_attach(rt, request):
        raise Conflict(
            f"a package goes with a fulfilment; the request is '{request.state}'",
            state=request.state,
            version=request.version,
        )
    if not files:
        raise Invalid({"files": "attach at least one file"})
    if len(files) > s.package_max_files:
        raise Invalid({"files": f"at most {s.package_max_files} files per package"})
    days = s.package_expiry_days if expires_in_days is None else expires_in_days
    if not 1 <= days <= 365:
        raise Invalid({"expires_in_days": "must be from 1 to 365"})
    limit = s.package_max_downloads if max_downloads is None else max_downloads
    if not 1 <= limit <= 1000:
        raise Invalid({"max_downloads": "must be from 1 to 1000"})

    now = utcnow()
    package = DisclosurePackage(
        request_id=request.id,
        created_by=actor,
        created_at=now,
        expires_at=now + timedelta(days=days),
        max_downloads=limit,
        total_size=0,
    )
    directory = _directory(rt, package.id)
    directory.mkdir(parents=True, exist_ok=False)
    rows: list[PackageFile] = []
    try:
        for incoming in files:
            row = PackageFile(
                package_id=package.id,
                filename=safe_filename(incoming.filename),
                content_type=(incoming.content_type or "application/octet-stream")[:255],
                size=0,
                sha256="",
            )
            row.size, row.sha256 = _store(
                incoming, directory / row.id, s.package_max_bytes - package.total_size
            )
            if row.size == 0:
                raise Invalid({"files": f"'{row.filename}' is empty"})
            package.total_size += row.size
            rows.append(row)
        session.add(package)
        session.flush()
        session.add_all(rows)
        append_event(
            session,
            request.id,
            kind="package_attached",
            actor=actor,
            at=now,
            detail={
                "package_id": package.id,
                "expires_at": package.expires_at.isoformat(),
                "max_downloads": limit,
                "files": [{"id": r.id, "size": r.size, "sha256": r.sha256} for r in rows],
            },
        )
        queue_letter(
            rt,
            session,
            request,
            f"package:{package.id}",
            READY_LETTER,
            {
                **letter_context(rt, request),
                "package_expires_on": rt.calendar.local_date(package.expires_at).isoformat(),
                "package_max_downloads": limit,
                "package_files": [
                    {"filename": r.filename, "size": r.size, "sha256": r.sha256} for r in rows
                ],
            },
        )
        session.commit()
    except BaseException:
        session.rollback()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    log.info("package %s attached to %s by %s", package.id, request.reference, actor)
    return package


def _store(incoming: IncomingFile, path: Path, room: int) -> tuple[int, str]:
    """Copy the stream to ``path``, hashing as it goes; refuse it past ``room`` bytes."""
    digest, size = hashlib.sha256(), 0
    with path.open("xb") as out:
        while chunk := incoming.stream.read(CHUNK):
            size += len(chunk)
            if size > room:
                raise PayloadTooLarge(
                    "the package's files together may not exceed the configured size "
                    "(DSRFLOW_PACKAGE_MAX_BYTES)"
                )
            digest.update(chunk)
            out.write(chunk)
    return size, digest.hexdigest()


def describe(rt: Runtime, session: Session, request: Request) -> list[PackagePublic]:
    """A request's packages as handlers see them, newest first."""
    packages = repository.for_request(session, request.id)
    files = repository.files_of(session, [p.id for p in packages])
    return [_public(p, files[p.id]) for p in packages]


def _public(package: DisclosurePackage, files: list[PackageFile]) -> PackagePublic:
    return PackagePublic(
        id=package.id,
        request_id=package.request_id,
        created_by=package.created_by,
        created_at=package.created_at,
        expires_at=package.expires_at,
        max_downloads=package.max_downloads,
        total_size=package.total_size,
        removed_at=package.removed_at,
        removed_reason=package.removed_reason,
        files=[
            PackageFilePublic(
                id=f.id,
                filename=f.filename,
                content_type=f.content_type,
                size=f.size,
                sha256=f.sha256,
                downloads=f.downloads,
                downloads_left=0
                if package.removed_at
                else max(0, package.max_downloads - f.downloads),
            )
            for f in files
        ],
    )


@dataclass(frozen=True)
class OfferedFile:
    id: str
    filename: str
    size: int
    sha256: str
    downloads_left: int


@dataclass(frozen=True)
class OfferedPackage:
    id: str
    expires_at: datetime
    expires_on: date  # the last local day of the link
    files: list[OfferedFile]


def offered(
    rt: Runtime, session: Session, request: Request, now: datetime | None = None
) -> list[OfferedPackage]:
    """What the status page offers: packages not removed and not expired, newest first."""
    now = now or utcnow()
    packages = [
        p
        for p in repository.for_request(session, request.id)
        if p.removed_at is None and p.expires_at > now
    ]
    files = repository.files_of(session, [p.id for p in packages])
    return [
        OfferedPackage(
            id=p.id,
            expires_at=p.expires_at,
            expires_on=rt.calendar.local_date(p.expires_at),
            files=[
                OfferedFile(
                    id=f.id,
                    filename=f.filename,
                    size=f.size,
                    sha256=f.sha256,
                    downloads_left=max(0, p.max_downloads - f.downloads),
                )
                for f in files[p.id]
            ],
        )
        for p in packages
    ]


@dataclass(frozen=True)
class Download:
    path: Path
    filename: str
    content_type: str
    size: int
    sha256: str


def download(rt: Runtime, session: Session, status_token: str, file_id: str) -> Download:
    """Count and audit one download of a package file by the requester, and commit; the
    caller then sends the file. Raises NotFound (no such request or file, or not this
    request's) or Gone (the link expired, the package was removed, the downloads are used up)."""
    request = requests_repository.by_status_token(session, token_digest(status_token))
    found = repository.file_with_package(session, file_id)
    if request is None or found is None or found[1].request_id != request.id:
        raise NotFound("No such file.")
    requests_repository.lock(session, request.id)  # before its event, as every writer does
    row, package = found
    now = utcnow()
    path = _directory(rt, package.id) / row.id
    if package.removed_at is not None or package.expires_at <= now or not path.is_file():
        raise Gone("The link has expired.", reason="expired")
    if not repository.count_download(session, row.id, package.max_downloads, now):
        session.rollback()
        raise Gone("The file may not be downloaded again.", reason="limit")
    append_event(
        session,
        request.id,
        kind="package_downloaded",
        actor="requester",
        at=now,
        detail={
            "package_id": package.id,
            "file_id": row.id,
            "sha256": row.sha256,
            "download": row.downloads + 1,
        },
    )
    session.commit()
    return Download(path, row.filename, row.content_type, row.size, row.sha256)


def revoke(
    rt: Runtime, session: Session, request_id: str, package_id: str, *, actor: str
) -> DisclosurePackage:
    """A handler takes a package back (sent to the wrong request, say): the files are deleted
    and the links stop working. Audited; commits."""
    package = repository.get(session, package_id)
    if package is None or package.request_id != request_id:
        raise NotFound("No such package.")
    if not _remove(rt, session, package, "revoked", actor):
        raise Conflict("the package was already removed", removed_reason=package.removed_reason)
    session.commit()
    session.refresh(package)
    return package


def _remove(
    rt: Runtime, session: Session, package: DisclosurePackage, reason: str, actor: str
) -> bool:
    """Mark removed, audit, delete the files (no commit). False if already removed."""
    now = utcnow()
    requests_repository.lock(session, package.request_id)  # before its event
    if not repository.mark_removed(session, package.id, reason, now):
        return False
    append_event(
        session,
        package.request_id,
        kind="package_removed",
        actor=actor,
        at=now,
        detail={"package_id": package.id, "removed_reason": reason},
    )
    # The files go now: a removed package must never be downloadable again, and personal data
    # must not outlive its link. A row left marked present by a failed commit finds no file
    # (a download of it answers 410).
    shutil.rmtree(_directory(rt, package.id), ignore_errors=True)
    return True


def remove_for_request(
    rt: Runtime, session: Session, request_id: str, *, reason: str = "purged", actor: str = "purge"
) -> int:
    """Delete every package file of a request (for ``dsrflow purge``), audited, in the caller's
    transaction: the caller commits. File names are blanked, as they may name the person.
    Returns how many packages were removed."""
    removed = 0
    for package_id in repository.live_for_request(session, request_id):
        package = repository.get(session, package_id)
        if package is not None and _remove(rt, session, package, reason, actor):
            removed += 1
    for files in repository.files_of(
        session, [p.id for p in repository.for_request(session, request_id)]
    ).values():
        for row in files:
            row.filename = row.id
            session.add(row)
    return removed


def remove_expired(rt: Runtime, now: datetime | None = None) -> PackageSweepReport:
    """Remove the files of every package whose link has expired, one transaction each."""
    now = now or utcnow()
    report = PackageSweepReport()
    with Session(rt.db) as session:
        ids = repository.expired(session, now)
        session.rollback()
    for package_id in ids:
        with Session(rt.db) as session:
            try:
                package = repository.get(session, package_id)
                if package is not None and _remove(rt, session, package, "expired", "scheduler"):
                    report.removed += 1
                session.commit()
            except Exception:
                session.rollback()
                report.errors += 1
                log.exception("package %s could not be removed; going on", package_id)
    return report
