"""Every query on disclosure packages. Nothing here commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from dsrflow.packages.models import DisclosurePackage, PackageFile


def get(session: Session, package_id: str) -> DisclosurePackage | None:
    return session.get(DisclosurePackage, package_id)


def for_request(session: Session, request_id: str) -> list[DisclosurePackage]:
    """A request's packages, newest first."""
    query = (
        select(DisclosurePackage)
        .where(DisclosurePackage.request_id == request_id)
        .order_by(col(DisclosurePackage.created_at).desc(), col(DisclosurePackage.id))
    )
    return list(session.exec(query))


def files_of(session: Session, package_ids: list[str]) -> dict[str, list[PackageFile]]:
    files: dict[str, list[PackageFile]] = {p: [] for p in package_ids}
    if not package_ids:
        return files
    query = (
        select(PackageFile)
        .where(col(PackageFile.package_id).in_(package_ids))
        .order_by(col(PackageFile.filename), col(PackageFile.id))
    )
    for row in session.exec(query):
        files[row.package_id].append(row)
    return files


def file_with_package(
    session: Session, file_id: str
) -> tuple[PackageFile, DisclosurePackage] | None:
    query = (
        select(PackageFile, DisclosurePackage)
        .join(DisclosurePackage, col(DisclosurePackage.id) == col(PackageFile.package_id))
        .where(PackageFile.id == file_id)
    )
    row = session.exec(query).first()
    return (row[0], row[1]) if row else None


def count_download(session: Session, file_id: str, limit: int, now: datetime) -> bool:
    """Count one download, only while fewer than ``limit`` were made (race-safe)."""
    result = session.execute(
        update(PackageFile)
        .where(col(PackageFile.id) == file_id, col(PackageFile.downloads) < limit)
        .values(downloads=col(PackageFile.downloads) + 1, last_downloaded_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def mark_removed(session: Session, package_id: str, reason: str, now: datetime) -> bool:
    """Mark a package removed, unless it already is (so one remover wins)."""
    result = session.execute(
        update(DisclosurePackage)
        .where(col(DisclosurePackage.id) == package_id, col(DisclosurePackage.removed_at).is_(None))
        .values(removed_at=now, removed_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def expired(session: Session, now: datetime, limit: int = 500) -> list[str]:
    """Ids of packages past their expiry whose files are still there."""
    query = (
        select(DisclosurePackage.id)
        .where(
            col(DisclosurePackage.removed_at).is_(None), col(DisclosurePackage.expires_at) <= now
        )
        .order_by(col(DisclosurePackage.expires_at))
        .limit(limit)
    )
    return list(session.exec(query))


def live_for_request(session: Session, request_id: str) -> list[str]:
    query = select(DisclosurePackage.id).where(
        DisclosurePackage.request_id == request_id, col(DisclosurePackage.removed_at).is_(None)
    )
    return list(session.exec(query))
