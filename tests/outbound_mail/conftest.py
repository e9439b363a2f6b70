"""Mail fixtures: a real SMTP server (aiosmtpd) and a runtime pointed at it."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from sqlmodel import Session, col, select

from dsrflow.outbound_mail.dispatch import FlushReport, flush_outbox
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.runtime import Runtime
from tests.conftest import with_secrets
from tests.services import require
from tests.services.smtp import SmtpMessage, SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with require(SmtpServer) as server:
        yield server


def pointed_at(rt: Runtime, server: SmtpServer, **settings: Any) -> Runtime:
    """The same database, with settings that send to ``server``."""
    update = {
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_security": "none",
        "smtp_timeout_seconds": 5.0,
        **settings,
    }
    return Runtime.load(
        rt.settings.model_copy(update=with_secrets(update)), db=rt.db, definitions=rt.definitions
    )


@pytest.fixture
def mail_rt(rt: Runtime, smtp: SmtpServer) -> Runtime:
    return pointed_at(rt, smtp)


def company(rt: Runtime) -> str:
    return rt.definitions.company.name.for_language("ja")


def flush(rt: Runtime, **kwargs: Any) -> FlushReport:
    kwargs.setdefault("from_name", company(rt))
    return asyncio.run(flush_outbox(rt.db, rt.settings, rt.letters, **kwargs))


def outbox(rt: Runtime, **where: Any) -> list[OutboxMessage]:
    query = select(OutboxMessage).order_by(col(OutboxMessage.id))
    for name, value in where.items():
        query = query.where(getattr(OutboxMessage, name) == value)
    with Session(rt.db) as session:
        return list(session.exec(query).all())


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def by_message_id(messages: list[SmtpMessage]) -> dict[str, list[SmtpMessage]]:
    seen: dict[str, list[SmtpMessage]] = {}
    for m in messages:
        seen.setdefault(str(m.parsed()["Message-ID"]), []).append(m)
    return seen


def assert_delivered_as_queued(message: EmailMessage, row: OutboxMessage) -> None:
    """What arrived is exactly what the outbox row holds, after MIME decoding."""
    assert str(message["Message-ID"]) == row.message_id
    assert str(message["Subject"]) == row.subject
    assert str(message["To"]) == row.recipient
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    body = message.get_content()
    assert body.replace("\r\n", "\n") == row.body
    if row.in_reply_to:
        assert str(message["In-Reply-To"]) == row.in_reply_to
        assert str(message["References"]) == row.in_reply_to
    else:
        assert message["In-Reply-To"] is None
