"""Disclosure packages: attached by a handler, offered on the status page through links that
expire, counted and audited per download, removed on expiry, revocation and purge."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from dsrflow.app import create_app
from dsrflow.audit.chain import verify_chains
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.packages import service as packages
from dsrflow.packages.models import DisclosurePackage
from dsrflow.requests import repository, service
from dsrflow.requests.schemas import RequestCreate, TransitionIn
from dsrflow.runtime import Runtime
from tests.conftest import VERIFY, request_body

PDF = b"%PDF-1.4 disclosed data " + bytes(range(256)) * 40


def _verified(rt: Runtime, **overrides: str) -> tuple[str, str]:
    """(request id, status token) of a disclosure whose identity is verified."""
    with Session(rt.db, expire_on_commit=False) as s:
        submitted = service.submit(
            rt, s, RequestCreate(**request_body("disclosure", **overrides)), channel="web"
        )
        service.transition(
            rt,
            s,
            submitted.request.id,
            TransitionIn(trigger="verify_identity", **VERIFY),
            actor="test",
        )
    return submitted.request.id, submitted.status_token


def _attach(client: TestClient, auth: dict[str, str], key: str, **form: str):  # type: ignore[no-untyped-def]
    files = [
        ("files", ("開示データ.pdf", PDF, "application/pdf")),
        ("files", ("../../etc/履歴.csv", b"date,item\n2026-04-01,login\n", "text/csv")),
    ]
    return client.post(f"/api/v1/requests/{key}/packages", files=files, data=form, headers=auth)


def _history(rt: Runtime, request_id: str) -> list[str]:
    with Session(rt.db) as s:
        return [e.kind for e in repository.history(s, request_id)]


def test_attach_then_the_requester_downloads_from_the_status_page(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request_id, token = _verified(rt)
    with Session(rt.db) as s:
        reference = repository.get(s, request_id).reference  # type: ignore[union-attr]
    response = _attach(client, auth, reference, max_downloads="2")
    assert response.status_code == 201, response.text
    package = response.json()
    assert package["max_downloads"] == 2
    names = {f["filename"]: f for f in package["files"]}
    assert set(names) == {"開示データ.pdf", "履歴.csv"}, "no path survives in a name"
    pdf = names["開示データ.pdf"]
    assert pdf["size"] == len(PDF)
    assert pdf["sha256"] == hashlib.sha256(PDF).hexdigest()
    stored = rt.settings.resolved_packages_dir / package["id"] / pdf["id"]
    assert stored.read_bytes() == PDF, "stored under its id, not its name"
    expires = package["expires_at"]
    assert expires > package["created_at"]

    # The requester is told by mail, with no file and no link to one.
    with Session(rt.db) as s:
        (ready,) = s.exec(select(OutboxMessage).where(OutboxMessage.letter == "package_ready"))
    assert ready.recipient == "taro@example.jp"
    assert "開示データ.pdf" in ready.body
    assert pdf["sha256"] in ready.body
    assert "/status/" not in ready.body
    assert pdf["id"] not in ready.body

    page = client.get(f"/status/{token}")
    assert page.status_code == 200
    link = f"/status/{token}/packages/{pdf['id']}"
    assert link in page.text
    assert "開示データのダウンロード" in page.text

    first = client.get(link)
    assert first.status_code == 200
    assert first.content == PDF
    assert first.headers["content-type"] == "application/octet-stream"
    assert first.headers["content-disposition"].startswith("attachment; filename*=UTF-8''")
    assert first.headers["cache-control"] == "no-store"
    assert client.get(link).status_code == 200
    used_up = client.get(link)
    assert used_up.status_code == 410, "the download limit holds"
    assert "ダウンロードできません" in used_up.text

    kinds = _history(rt, request_id)
    assert kinds.count("package_attached") == 1
    assert kinds.count("package_downloaded") == 2, "every download is audited"
    with Session(rt.db) as s:
        assert verify_chains(s)[1] == []
    listed = client.get(f"/api/v1/requests/{request_id}/packages", headers=auth).json()
    downloaded = {f["filename"]: f for f in listed[0]["files"]}["開示データ.pdf"]
    assert (downloaded["downloads"], downloaded["downloads_left"]) == (2, 0)


def test_links_need_the_right_status_token(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request_id, token = _verified(rt)
    _other_id, other_token = _verified(rt, email="other@example.jp")
    file_id = _attach(client, auth, request_id).json()["files"][0]["id"]
    assert client.get(f"/status/{other_token}/packages/{file_id}").status_code == 404
    assert client.get(f"/status/st_wrong/packages/{file_id}").status_code == 404
    assert client.get(f"/status/{token}/packages/nope").status_code == 404
    assert client.get(f"/status/{token}/packages/{file_id}").status_code == 200


def test_expired_packages_are_removed_by_the_sweep(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request_id, token = _verified(rt)
    package = _attach(client, auth, request_id, expires_in_days="3").json()
    file_id = package["files"][0]["id"]
    directory = rt.settings.resolved_packages_dir / package["id"]
    assert directory.is_dir()
    with Session(rt.db) as s:
        row = s.get(DisclosurePackage, package["id"])
        assert row is not None
        expires_at = row.expires_at
    assert packages.remove_expired(rt, expires_at - timedelta(seconds=1)).removed == 0
    assert directory.is_dir()
    report = packages.remove_expired(rt, expires_at + timedelta(seconds=1))
    assert (report.removed, report.errors) == (1, 0)
    assert not directory.exists(), "the files are gone"
    assert client.get(f"/status/{token}/packages/{file_id}").status_code == 410
    assert f"/packages/{file_id}" not in client.get(f"/status/{token}").text
    assert "package_removed" in _history(rt, request_id)
    assert packages.remove_expired(rt, expires_at + timedelta(days=1)).removed == 0


def test_a_handler_revokes_a_package(rt: Runtime, client: TestClient, auth: dict[str, str]) -> None:
    request_id, token = _verified(rt)
    package = _attach(client, auth, request_id).json()
    url = f"/api/v1/requests/{request_id}/packages/{package['id']}"
    revoked = client.delete(url, headers=auth)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["removed_reason"] == "revoked"
    assert client.delete(url, headers=auth).status_code == 409
    file_id = package["files"][0]["id"]
    assert client.get(f"/status/{token}/packages/{file_id}").status_code == 410
    assert not (rt.settings.resolved_packages_dir / package["id"]).exists()


def test_purge_removes_a_requests_packages(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request_id, _ = _verified(rt)
    package = _attach(client, auth, request_id).json()
    with Session(rt.db) as s:
        assert packages.remove_for_request(rt, s, request_id) == 1
        s.commit()
    assert not (rt.settings.resolved_packages_dir / package["id"]).exists()
    listed = client.get(f"/api/v1/requests/{request_id}/packages", headers=auth).json()
    assert listed[0]["removed_reason"] == "purged"
    assert all(f["filename"] == f["id"] for f in listed[0]["files"]), "names may name the person"
    with Session(rt.db) as s:
        assert verify_chains(s)[1] == []


def test_attaching_is_refused_before_verification_and_checked(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    with Session(rt.db, expire_on_commit=False) as s:
        fresh = service.submit(rt, s, RequestCreate(**request_body()), channel="web").request
    refused = _attach(client, auth, fresh.id)
    assert refused.status_code == 409, "no data leaves before identity is verified"
    request_id, _ = _verified(rt)
    url = f"/api/v1/requests/{request_id}/packages"
    empty = client.post(url, files=[("files", ("a.txt", b"", "text/plain"))], headers=auth)
    assert empty.status_code == 422
    none = client.post(url, files={"max_downloads": (None, "2")}, headers=auth)
    assert none.status_code == 422, none.text
    not_multipart = client.post(url, data={"max_downloads": "2"}, headers=auth)
    assert not_multipart.status_code == 415, "the API takes JSON, or multipart files here"
    bad = _attach(client, auth, request_id, expires_in_days="0")
    assert bad.status_code == 422
    assert "expires_in_days" in bad.json()["errors"]
    assert client.post(url, files=[("files", ("a.txt", b"x", "text/plain"))]).status_code == 401
    assert not any(rt.settings.resolved_packages_dir.glob("*/*")), "nothing left behind"


def test_the_package_size_limit(rt: Runtime, auth: dict[str, str], tmp_path: Path) -> None:
    small = rt.settings.model_copy(
        update={"package_max_bytes": 4096, "packages_dir": tmp_path / "elsewhere"}
    )
    small_rt = Runtime.load(small, db=rt.db)
    request_id, _ = _verified(small_rt)
    with TestClient(create_app(small_rt)) as client:
        url = f"/api/v1/requests/{request_id}/packages"
        fits = client.post(url, files=[("files", ("a.bin", b"x" * 4000, "x/y"))], headers=auth)
        assert fits.status_code == 201, fits.text
        assert (tmp_path / "elsewhere" / fits.json()["id"]).is_dir(), "the configured directory"
        too_big = client.post(
            url,
            files=[
                ("files", ("a.bin", b"x" * 3000, "x/y")),
                ("files", ("b.bin", b"y" * 3000, "x/y")),
            ],
            headers=auth,
        )
        assert too_big.status_code == 413
        far_too_big = client.post(
            url, files=[("files", ("a.bin", b"x" * (2 * 1024 * 1024), "x/y"))], headers=auth
        )
        assert far_too_big.status_code == 413
    assert len(list((tmp_path / "elsewhere").iterdir())) == 1, "the refused ones left nothing"


@pytest.mark.parametrize("name", ["a/b/c.pdf", "..\\x.pdf", "\x00\x1f.pdf", "", "."])
def test_safe_filenames(name: str) -> None:
    safe = packages.safe_filename(name)
    assert safe
    assert "/" not in safe
    assert "\\" not in safe
    assert "\x00" not in safe


def test_only_package_uploads_get_the_larger_body_limit(rt: Runtime) -> None:
    from dsrflow.app import _body_limit

    limit = _body_limit(rt.settings)
    big = rt.settings.package_max_bytes + 1024 * 1024
    assert limit({"method": "POST", "path": "/api/v1/requests/x/packages"}) == big
    assert limit({"method": "POST", "path": "/console/requests/x/package"}) == big
    for method, path in (
        ("POST", "/api/v1/requests"),
        ("POST", "/api/v1/requests/x/transitions"),
        ("POST", "/api/v1/requests/x/packages/y"),
        ("PUT", "/api/v1/requests/x/packages"),
    ):
        assert limit({"method": method, "path": path}) == rt.settings.max_body_bytes, path


def test_dsrflow_purge_deletes_the_package_files(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    from dsrflow.db import utcnow
    from dsrflow.retention import purge

    request_id, _token = _verified(rt)
    package = _attach(client, auth, request_id, expires_in_days="365").json()
    paid = client.post(
        f"/api/v1/requests/{request_id}/payments",
        json={"amount_jpy": 1000, "method": "bank_transfer"},
        headers=auth,
    )
    assert paid.status_code == 200, paid.text
    fulfilled = client.post(
        f"/api/v1/requests/{request_id}/transitions",
        json={"trigger": "fulfill", "summary": "開示しました。", "method_used": "electronic"},
        headers=auth,
    )
    assert fulfilled.status_code == 200, fulfilled.text
    later = utcnow() + timedelta(days=rt.settings.retention_closed_days + 1)
    assert len(purge(rt, now=later).requests) == 1
    assert not (rt.settings.resolved_packages_dir / package["id"]).exists()
    listed = client.get(f"/api/v1/requests/{request_id}/packages", headers=auth).json()
    assert listed[0]["removed_reason"] == "purged"
    assert all(f["filename"] == f["id"] for f in listed[0]["files"])
    with Session(rt.db) as s:
        assert verify_chains(s)[1] == [], "the chain still verifies after the purge"
