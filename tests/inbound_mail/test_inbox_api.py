"""The handler inbox: list, show, convert (keeping the arrival time), dismiss, a request's mail."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from dsrflow.inbound_mail.reading import ingest
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests import repository as requests
from dsrflow.runtime import Runtime
from tests.conftest import auth_header
from tests.inbound_mail.conftest import Seeded, corpus

PROBLEM = "application/problem+json"


def triage_mail(n: int, day: int = 20) -> bytes:
    return (
        f"Received: by mx.innovativeai.co.jp; {day} Nov 2026 10:00:00 +0900\r\n"
        f"From: =?UTF-8?B?5bGx55SwIOWkqumDjg==?= <person{n}@example.jp>\r\n"
        f"Subject: Question {n}\r\nMessage-ID: <triage-{n}@example.jp>\r\n\r\n"
        "I have a question about my account.\r\n"
    ).encode()


def test_list_filters_and_pages(rt: Runtime, client: TestClient, auth: dict[str, str]) -> None:
    for n in range(3):
        ingest(rt, triage_mail(n, day=20 + n))
    ingest(rt, corpus("13_en_subject_access_request.eml"))
    ingest(rt, corpus("26_en_autoreply_x_autoreply.eml"))

    everything = client.get("/api/v1/inbox", headers=auth).json()
    assert everything["total"] == 5
    page = client.get("/api/v1/inbox?status=triage&limit=2", headers=auth).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    assert [i["subject"] for i in page["items"]] == ["Question 2", "Question 1"]  # newest first
    rest = client.get("/api/v1/inbox?status=triage&limit=2&offset=2", headers=auth).json()
    assert [i["subject"] for i in rest["items"]] == ["Question 0"]
    item = page["items"][0]
    assert item["from_name"] == "山田 太郎"
    assert item["reason"] == "no request type recognised"
    assert "text" not in item, "lists stay light"
    created = client.get("/api/v1/inbox?status=created", headers=auth).json()["items"]
    assert created[0]["reference"].startswith("DSR-2026-")
    assert created[0]["detected_type"] == "disclosure"
    response = client.get("/api/v1/inbox?status=nonsense", headers=auth)
    assert response.status_code == 422


def test_show_a_message_and_its_raw_bytes(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    raw = corpus("08_ja_disclosure_with_attachments.eml")
    outcome = ingest(rt, raw)
    shown = client.get(f"/api/v1/inbox/{outcome.inbound_id}", headers=auth).json()
    assert shown["status"] == "created"
    assert shown["reference"] == outcome.reference
    assert "開示請求書と本人確認書類を添付します。" in shown["text"]
    assert [a["filename"] for a in shown["attachments"]] == ["本人確認書類.pdf", "保険証.png"]
    assert all(a["stored"] for a in shown["attachments"])
    assert shown["raw_size"] == len(raw)

    response = client.get(f"/api/v1/inbox/{outcome.inbound_id}/raw", headers=auth)
    assert response.status_code == 200
    assert response.content == raw
    assert response.headers["content-type"] == "message/rfc822"
    assert response.headers["content-disposition"].startswith("attachment;")

    missing = client.get("/api/v1/inbox/999999", headers=auth)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith(PROBLEM)


def test_convert_keeps_the_original_arrival_for_the_deadline(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    outcome = ingest(rt, triage_mail(1, day=20))
    assert outcome.status == "triage"
    arrived = datetime(2026, 11, 20, 1, tzinfo=UTC)

    response = client.post(
        f"/api/v1/inbox/{outcome.inbound_id}/convert",
        headers=auth,
        json={"type": "disclosure"},
    )
    assert response.status_code == 200, response.text
    converted = response.json()
    assert converted["message"]["status"] == "created"
    assert converted["message"]["decided_by"].startswith("handler:")
    assert datetime.fromisoformat(converted["received_at"]) == arrived
    wf = rt.definitions.workflow("disclosure")
    assert datetime.fromisoformat(converted["due_at"]) == rt.calendar.due_at(arrived, wf.deadline)

    request = client.get(f"/api/v1/requests/{converted['request_id']}", headers=auth).json()
    assert request["channel"] == "email"
    assert request["type"] == "disclosure"
    assert request["email"] == "person1@example.jp"
    assert request["name"] == "山田 太郎"
    assert datetime.fromisoformat(request["received_at"]) == arrived
    kinds = [e["kind"] for e in request["history"]]
    assert kinds == ["submitted", "message"]
    assert request["history"][1]["detail"]["inbound_message_id"] == outcome.inbound_id
    with Session(rt.db) as session:
        letters = session.exec(
            select(OutboxMessage).where(OutboxMessage.request_id == converted["request_id"])
        ).all()
    assert {m.letter for m in letters} >= {"acknowledgment", "handler_notice"}

    again = client.post(
        f"/api/v1/inbox/{outcome.inbound_id}/convert", headers=auth, json={"type": "disclosure"}
    )
    assert again.status_code == 409
    assert again.headers["content-type"].startswith(PROBLEM)
    assert again.json()["status_now"] == "created"
    dismissed = client.post(
        f"/api/v1/inbox/{outcome.inbound_id}/dismiss", headers=auth, json={"note": "dup"}
    )
    assert dismissed.status_code == 409


def test_convert_with_overrides_and_errors(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    no_sender = ingest(rt, corpus("38_ja_missing_from_quarantined.eml"))
    assert no_sender.status == "quarantined"
    url = f"/api/v1/inbox/{no_sender.inbound_id}/convert"

    response = client.post(url, headers=auth, json={"type": "disclosure"})
    assert response.status_code == 422
    assert "email" in response.json()["errors"]
    response = client.post(url, headers=auth, json={"type": "no_such_type", "email": "a@b.jp"})
    assert response.status_code == 422
    assert "type" in response.json()["errors"]
    response = client.post(url, headers=auth, json={"type": "disclosure", "extra": 1})
    assert response.status_code == 422

    response = client.post(
        url,
        headers=auth,
        json={
            "type": "suspension",
            "name": "匿名 希望",
            "email": "anon@example.jp",
            "language": "en",
        },
    )
    assert response.status_code == 200, response.text
    with Session(rt.db) as session:
        request = requests.get(session, response.json()["request_id"])
    assert request is not None
    assert (request.requester_name, request.requester_email) == ("匿名 希望", "anon@example.jp")
    assert request.language == "en"
    assert request.type == "suspension"
    assert request.received_at == datetime(2026, 11, 29, 2, tzinfo=UTC)

    missing = client.post("/api/v1/inbox/999999/convert", headers=auth, json={"type": "x"})
    assert missing.status_code == 404


def test_dismiss_with_a_note(rt: Runtime, client: TestClient, auth: dict[str, str]) -> None:
    outcome = ingest(rt, triage_mail(1))
    url = f"/api/v1/inbox/{outcome.inbound_id}/dismiss"
    assert client.post(url, headers=auth, json={"note": " "}).status_code == 422
    assert client.post(url, headers=auth, json={}).status_code == 422
    response = client.post(url, headers=auth, json={"note": "営業メール"})
    assert response.status_code == 200
    shown = response.json()
    assert shown["status"] == "dismissed"
    assert shown["note"] == "営業メール"
    assert shown["decided_by"].startswith("handler:")
    assert shown["decided_at"]
    assert client.post(url, headers=auth, json={"note": "again"}).status_code == 409
    assert (
        client.post("/api/v1/inbox/999999/dismiss", headers=auth, json={"note": "x"}).status_code
        == 404
    )

    created = ingest(rt, corpus("13_en_subject_access_request.eml"))
    response = client.post(
        f"/api/v1/inbox/{created.inbound_id}/dismiss", headers=auth, json={"note": "no"}
    )
    assert response.status_code == 409, "only what waits for a decision can be dismissed"


def test_a_requests_messages_and_attachments(
    rt: Runtime, client: TestClient, auth: dict[str, str], seeded: Seeded
) -> None:
    reply = ingest(rt, corpus("23_en_reply_with_attachment.eml"))
    autoreply = ingest(rt, corpus("25_ja_autoreply_auto_submitted.eml"))
    request_id = seeded.a.id

    messages = client.get(f"/api/v1/requests/{request_id}/messages", headers=auth).json()
    assert [(m["id"], m["status"]) for m in messages] == [
        (reply.inbound_id, "joined"),
        (autoreply.inbound_id, "ignored"),
    ]
    (attachment,) = messages[0]["attachments"]
    assert attachment["filename"] == "licence.jpg"
    assert attachment["content_type"] == "image/jpeg"

    url = (
        f"/api/v1/requests/{request_id}/messages/{reply.inbound_id}/attachments/{attachment['id']}"
    )
    response = client.get(url, headers=auth)
    assert response.status_code == 200
    assert response.content.startswith(b"\xff\xd8")
    assert len(response.content) == attachment["size"]
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-disposition"].startswith('attachment; filename="licence.jpg"')
    assert response.headers["x-content-type-options"] == "nosniff"
    same = client.get(
        f"/api/v1/inbox/{reply.inbound_id}/attachments/{attachment['id']}", headers=auth
    )
    assert same.content == response.content

    other = (
        f"/api/v1/requests/{seeded.b.id}/messages/{reply.inbound_id}/attachments/{attachment['id']}"
    )
    assert client.get(other, headers=auth).status_code == 404, "not this request's message"
    assert client.get(url.replace(str(attachment["id"]), "999999"), headers=auth).status_code == 404
    assert client.get("/api/v1/requests/nope/messages", headers=auth).status_code == 404
    assert client.get(f"/api/v1/requests/{seeded.b.id}/messages", headers=auth).json() == []


def test_japanese_attachment_names_download_as_utf8(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    outcome = ingest(rt, corpus("08_ja_disclosure_with_attachments.eml"))
    shown = client.get(f"/api/v1/inbox/{outcome.inbound_id}", headers=auth).json()
    pdf = shown["attachments"][0]
    response = client.get(
        f"/api/v1/inbox/{outcome.inbound_id}/attachments/{pdf['id']}", headers=auth
    )
    assert response.content.startswith(b"%PDF")
    disposition = response.headers["content-disposition"]
    assert "filename*=UTF-8''%E6%9C%AC%E4%BA%BA" in disposition


@pytest.mark.parametrize(
    ("role", "may_decide"), [("handler", True), ("admin", True), ("auditor", False)]
)
def test_roles(rt: Runtime, client: TestClient, role: str, may_decide: bool) -> None:
    headers = auth_header(rt, role)
    outcome = ingest(rt, triage_mail(1))
    assert client.get("/api/v1/inbox", headers=headers).status_code == 200
    assert client.get(f"/api/v1/inbox/{outcome.inbound_id}", headers=headers).status_code == 200
    convert = client.post(
        f"/api/v1/inbox/{outcome.inbound_id}/convert", headers=headers, json={"type": "disclosure"}
    )
    dismiss = client.post(
        f"/api/v1/inbox/{outcome.inbound_id}/dismiss", headers=headers, json={"note": "x"}
    )
    if may_decide:
        assert convert.status_code == 200
        assert dismiss.status_code == 409
    else:
        assert (convert.status_code, dismiss.status_code) == (403, 403)
        assert convert.headers["content-type"].startswith(PROBLEM)


def test_no_token_no_inbox(rt: Runtime, client: TestClient) -> None:
    outcome = ingest(rt, triage_mail(1))
    for method, url in (
        ("GET", "/api/v1/inbox"),
        ("GET", f"/api/v1/inbox/{outcome.inbound_id}"),
        ("GET", f"/api/v1/inbox/{outcome.inbound_id}/raw"),
        ("POST", f"/api/v1/inbox/{outcome.inbound_id}/dismiss"),
    ):
        response = client.request(method, url, json={"note": "x"})
        assert response.status_code == 401, url
        assert response.headers["content-type"].startswith(PROBLEM)
