"""Property tests: mutated and truncated mail never crashes and is never silently dropped."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from dsrflow.inbound_mail import repository
from dsrflow.inbound_mail.models import STATUSES, InboundMessage
from dsrflow.inbound_mail.reading import ingest, own_addresses, read_message
from dsrflow.inbound_mail.rules_file import IntakeRules, load_rules, rules_for
from dsrflow.runtime import Runtime
from tests.conftest import WORKFLOWS
from tests.inbound_mail.conftest import CORPUS, count

SAMPLES = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
RULES: IntakeRules = load_rules(WORKFLOWS / "intake" / "mail.yaml")
HEADERS = [
    b"From",
    b"Subject",
    b"Message-ID",
    b"In-Reply-To",
    b"References",
    b"Date",
    b"Received",
    b"Content-Type",
    b"Content-Transfer-Encoding",
    b"Content-Disposition",
    b"Auto-Submitted",
    b"Return-Path",
    b"MIME-Version",
]
NASTY = [
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n\r\n",
    b"=?",
    b"?=",
    b"=?UTF-8?B?",
    b"=?ISO-2022-JP?B?GyRC",
    b"\x1b$B",
    b"\x1b(I",
    b"--",
    b'boundary="',
    b"charset=",
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b"<",
    b">",
    b"@",
    b";",
    b"DSR-2026-000001",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus message, then a few cuts, flips, insertions and forged header lines."""
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(0, 6))):
        where = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "header", "nasty"]))
        if kind == "truncate":
            del data[where:]
        elif kind == "flip" and data:
            data[min(where, len(data) - 1)] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[where:where] = draw(st.binary(max_size=40))
        elif kind == "delete":
            del data[where : where + draw(st.integers(1, 200))]
        elif kind == "header":
            name = draw(st.sampled_from(HEADERS))
            value = draw(st.binary(max_size=80))
            data[0:0] = name + b": " + value + b"\r\n"
        else:
            data[where:where] = draw(st.sampled_from(NASTY))
    return bytes(data)


def assert_storable(text: str | None, limit: int | None = None) -> None:
    if text is None:
        return
    assert "\x00" not in text
    text.encode("utf-8")  # no lone surrogates: every database takes it
    if limit is not None:
        assert len(text) <= limit


@settings(max_examples=200, deadline=None)
@given(raw=st.one_of(mutated(), st.binary(max_size=2000)))
def test_reading_never_fails(raw: bytes) -> None:
    mail = read_message(
        raw,
        RULES,
        source="file",
        own_addresses={"info@innovativeai.co.jp"},
    )
    assert mail.raw == raw or mail.quarantine_reason
    # A parser failure is caught, but it is a bug: the parser copes with anything.
    assert not (mail.quarantine_reason or "").startswith("could not be parsed")
    assert mail.message_id.startswith("<")
    assert mail.message_id.endswith(">")
    assert len(mail.message_id) <= 250
    assert mail.message_id.isascii()
    assert mail.received_at.tzinfo is not None
    assert_storable(mail.subject, 998)
    assert_storable(mail.from_name, 200)
    assert_storable(mail.from_address, 320)
    assert_storable(mail.text)
    assert_storable(mail.in_reply_to)
    assert_storable(mail.references)
    for attachment in mail.attachments:
        assert_storable(attachment.filename, 255)
        assert_storable(attachment.content_type, 255)
    if mail.detected_type is not None:
        assert mail.detected_type in {t for _, t in RULES.phrases}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=mutated())
def test_every_message_ends_as_a_row_with_a_status(rt: Runtime, raw: bytes) -> None:
    """On both databases: whatever arrives is recorded (or recognised as already recorded)."""
    before = count(rt, InboundMessage)
    outcome = ingest(rt, raw, source="file")
    expected_id = read_message(
        raw,
        rules_for(rt),
        source="file",
        own_addresses=own_addresses(rt),
    ).message_id
    with Session(rt.db) as session:
        row = repository.get(session, outcome.inbound_id)
        assert row is not None
        assert row.status in STATUSES
        assert row.status == outcome.status
        assert row.message_id == expected_id
        if row.status in ("ignored", "quarantined", "triage"):
            assert row.reason
        # Caught, so nothing is lost, but a bug all the same.
        assert not (row.reason or "").startswith("could not be")
    assert count(rt, InboundMessage) == before + (0 if outcome.duplicate else 1)
