"""Mail from an agent (Art. 37(3)) and the triage clock (Art. 39): an agent's mail waits for a
handler, who converts it with the agent recorded; a triage item shows its Art. 39 date."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from dsrflow.inbound_mail.reading import ingest
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.runtime import Runtime


def agent_mail() -> bytes:
    body = "娘の山田 花子の法定代理人として、娘の個人データの開示を請求します。"
    return (
        "Received: by mx.innovativeai.co.jp; 20 Nov 2026 10:00:00 +0900\r\n"
        "From: parent@example.jp\r\n"
        "Subject: =?UTF-8?B?5YCL5Lq644OH44O844K/44Gu6ZaL56S66KuL5rGC?=\r\n"
        "Message-ID: <agent-1@example.jp>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def test_an_agents_mail_waits_in_triage_and_converts_with_the_agent(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    outcome = ingest(rt, agent_mail())
    assert outcome.status == "triage"
    assert "agent" in (outcome.reason or "")
    item = client.get(f"/api/v1/inbox/{outcome.inbound_id}", headers=auth).json()
    assert item["art39_date"] == date(2026, 12, 5).isoformat()  # arrival 11/20 + 15 days
    listed = client.get("/api/v1/inbox?status=triage", headers=auth).json()["items"]
    assert listed[0]["art39_date"] == "2026-12-05"

    converted = client.post(
        f"/api/v1/inbox/{outcome.inbound_id}/convert",
        json={
            "type": "disclosure",
            "name": "山田 花子",
            "email": "hanako@example.jp",
            "agent": {
                "name": "山田 太郎",
                "email": "parent@example.jp",
                "relation": "legal_representative",
            },
        },
        headers=auth,
    )
    assert converted.status_code == 200, converted.text
    request_id = converted.json()["request_id"]
    shown = client.get(f"/api/v1/requests/{request_id}", headers=auth).json()
    assert shown["name"] == "山田 花子"
    assert shown["agent"] == {
        "name": "山田 太郎",
        "email": "parent@example.jp",
        "relation": "legal_representative",
    }
    assert shown["channel"] == "email"
    assert shown["art39_date"] == "2026-12-05"  # the clock ran from the mail's arrival
    with Session(rt.db) as session:
        rows = session.exec(
            select(OutboxMessage).where(OutboxMessage.request_id == request_id)
        ).all()
    by_letter = {row.letter: row for row in rows}
    assert by_letter["acknowledgment"].recipient == "parent@example.jp"
    assert "ご本人：山田 花子 様（代理人：山田 太郎 様）" in by_letter["acknowledgment"].body
    assert by_letter["agent_notice"].recipient == "hanako@example.jp"


def test_an_ordinary_request_mail_still_makes_a_request(rt: Runtime) -> None:
    raw = agent_mail().replace("娘の山田 花子の法定代理人として、娘の".encode(), "私の".encode())
    assert ingest(rt, raw).status == "created"
