"""The corpus: each message in tests/inbound_mail/corpus ends as its manifest says, on both DBs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlmodel import Session, col, select

from dsrflow.audit.chain import verify_chains
from dsrflow.inbound_mail import repository
from dsrflow.inbound_mail.reading import ingest
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests import repository as requests
from dsrflow.runtime import Runtime
from tests.inbound_mail.conftest import CORPUS, MANIFEST, Seeded, corpus, counts

LANGUAGES = ("ja", "en")


def test_the_corpus_is_complete() -> None:
    files = {path.name for path in CORPUS.glob("*.eml")}
    assert files == set(MANIFEST), "every file has an entry, every entry a file"
    assert len(files) >= 30
    statuses = {entry["status"] for entry in MANIFEST.values()}
    assert statuses == {"created", "joined", "triage", "quarantined", "ignored"}
    created = {e["type"] for e in MANIFEST.values() if e["status"] == "created"}
    assert len(created) == 6, "each request type is created from mail"
    for request_type in created:  # in both languages
        names = [n for n, e in MANIFEST.items() if e.get("type") == request_type]
        assert any("_ja_" in n for n in names), request_type
        assert any("_en_" in n for n in names), request_type


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_message(name: str, rt: Runtime, seeded: Seeded) -> None:
    expected: dict[str, Any] = MANIFEST[name]
    raw = corpus(name)
    before = counts(rt)
    outcome = ingest(rt, raw, source="file")

    assert outcome.status == expected["status"], outcome
    assert not outcome.duplicate
    with Session(rt.db) as session:
        row = repository.get(session, outcome.inbound_id, with_raw=True)
        assert row is not None
        assert row.raw == raw, "the message is kept exactly as received"
        assert row.status == expected["status"]
        assert row.source == "file"
        if "reason" in expected:
            assert row.reason is not None
            assert expected["reason"] in row.reason
        for key, column in (("subject", "subject"), ("from", "from_address")):
            if key in expected:
                assert getattr(row, column) == expected[key]
        if "from_name" in expected:
            assert row.from_name == expected["from_name"]
        if "language" in expected:
            assert row.language == expected["language"]
        for part in expected.get("text", []):
            assert part in row.text
        for part in expected.get("not_text", []):
            assert part not in row.text
        if "received_at" in expected:
            assert row.received_at == datetime.fromisoformat(expected["received_at"])
        if "received_at_source" in expected:
            assert row.received_at_source == expected["received_at_source"]
        files = repository.attachments(session, [outcome.inbound_id])
        names = [a.filename or a.content_type for a, _ in files]
        assert names == expected.get("attachments", [])
        if "stored" in expected:
            assert [stored for _, stored in files] == expected["stored"]
        if "joins" in expected:
            assert row.request_id == seeded.named(expected["joins"]).id
        history = requests.history(session, row.request_id) if row.request_id else []
        letters = list(
            session.exec(
                select(OutboxMessage)
                .where(col(OutboxMessage.id) > before[2])
                .order_by(col(OutboxMessage.id))
            )
        )
        request = requests.get(session, row.request_id) if row.request_id else None

    status = expected["status"]
    if status == "created":
        assert request is not None
        assert outcome.reference == request.reference
        assert request.type == expected["type"]
        assert request.channel == "email"
        assert request.received_at == row.received_at, "the Art. 39 clock runs from arrival"
        assert request.requester_email == row.from_address
        assert request.language == row.language
        assert [e.kind for e in history] == ["submitted", "message"]
        assert history[1].detail["inbound_message_id"] == row.id
        recipients = {m.letter: m.recipient for m in letters}
        assert recipients["acknowledgment"] == row.from_address
        assert recipients["handler_notice"] == rt.settings.handler_email
        assert counts(rt) == (before[0] + 1, before[1] + 1, before[2] + len(letters))
    elif status == "joined":
        assert request is not None
        assert outcome.reference == request.reference
        message_events = [e for e in history if e.kind == "message"]
        assert [e.detail["inbound_message_id"] for e in message_events] == [row.id]
        assert message_events[0].at == row.received_at
        notified = [m for m in letters if m.letter == "requester_replied"]
        if expected.get("notifies"):
            assert [m.recipient for m in notified] == [rt.settings.handler_email]
            assert request.reference in notified[0].subject
            assert row.text not in notified[0].body, "no more personal data than needed"
        assert len(letters) == len(notified), "nothing is sent to the requester"
        if not expected.get("notifies"):
            assert not notified
        assert counts(rt)[1] == before[1], "no new request"
    else:
        # Never a request, never answered: no new request, and no mail but the handlers'
        # notice of a bounced letter.
        assert [(m.letter, m.recipient) for m in letters] == (
            [("delivery_failed", rt.settings.handler_email)] if expected.get("notifies") else []
        )
        assert counts(rt) == (before[0] + 1, before[1], before[2] + len(letters))
        assert all(e.kind != "message" for e in history)
        if "joins" not in expected:
            assert row.request_id is None

    with Session(rt.db) as session:
        assert verify_chains(session)[1] == []

    # The same message again is the same message: nothing more happens.
    after = counts(rt)
    again = ingest(rt, raw, source="file")
    assert again.duplicate
    assert again.inbound_id == outcome.inbound_id
    assert again.status == status
    assert counts(rt) == after
