"""Intake fixtures: the corpus and its manifest, two requests to reply to, a real IMAP server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import update
from sqlmodel import Session, col, func, select

from dsrflow.inbound_mail.models import InboundMessage
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.conftest import make_request, with_secrets
from tests.services import require
from tests.services.imap import ImapServer, SslMode

CORPUS = Path(__file__).parent / "corpus"
MANIFEST: dict[str, dict[str, Any]] = yaml.safe_load(
    (CORPUS / "manifest.yaml").read_text(encoding="utf-8")
)
ACK_MESSAGE_ID = "<ack-fixture@innovativeai.co.jp>"


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


@dataclass(frozen=True)
class Seeded:
    """Request A (DSR-2026-000001) waits for its requester; B (DSR-2026-000002) is received,
    and its acknowledgment went out as ``ACK_MESSAGE_ID``."""

    a: Request
    b: Request

    def named(self, key: str) -> Request:
        return {"A": self.a, "B": self.b}[key]


@pytest.fixture
def seeded(rt: Runtime) -> Seeded:
    a = make_request(
        rt, "disclosure", "awaiting_requester", received_at=datetime(2026, 11, 2, 1, tzinfo=UTC)
    )
    b = make_request(
        rt,
        "suspension",
        "received",
        name="佐藤 花子",
        email="hanako@example.jp",
        received_at=datetime(2026, 11, 3, 1, tzinfo=UTC),
    )
    assert (a.reference, b.reference) == ("DSR-2026-000001", "DSR-2026-000002")
    with Session(rt.db) as session:
        session.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.dedup_key) == f"{b.id}:acknowledgment")
            .values(message_id=ACK_MESSAGE_ID)
        )
        session.execute(
            update(Request)
            .where(col(Request.id) == b.id)
            .values(acknowledgment_message_id=ACK_MESSAGE_ID)
        )
        session.commit()
    return Seeded(a, b)


def count(rt: Runtime, model: Any) -> int:
    with Session(rt.db) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def counts(rt: Runtime) -> tuple[int, int, int]:
    """(inbound messages, requests, outbox rows)."""
    return count(rt, InboundMessage), count(rt, Request), count(rt, OutboxMessage)


def imap_runtime(rt: Runtime, server: ImapServer, **settings: Any) -> Runtime:
    """The same database, with settings that read ``server``."""
    update_ = {
        "imap_host": server.host,
        "imap_port": server.port,
        "imap_username": server.username,
        "imap_password": server.password,
        "imap_folder": server.folder,
        "imap_security": server.ssl_mode,
        **settings,
    }
    return Runtime.load(
        rt.settings.model_copy(update=with_secrets(update_)), db=rt.db, definitions=rt.definitions
    )


@contextmanager
def imap_server(ssl_mode: SslMode = "none") -> Iterator[ImapServer]:
    """A dovecot for one test (skipped where dovecot is missing, unless services are required)."""
    with require(ImapServer, ssl_mode=ssl_mode) as server:
        yield server


@pytest.fixture
def imap() -> Iterator[ImapServer]:
    with imap_server("none") as server:
        yield server


@pytest.fixture
def imap_rt(rt: Runtime, imap: ImapServer) -> Runtime:
    return imap_runtime(rt, imap)
