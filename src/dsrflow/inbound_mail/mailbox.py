"""The IMAP folders' sync state: a poller's claim on a folder, and the last UID read.

A claim is a lease: a poller that stops renewing it (by advancing) loses it, and another may
take the folder. The last UID advances in the same transaction as the message row
(``service.record_inbound``), so a crash never loses nor doubles a message.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from dsrflow.db import utcnow
from dsrflow.inbound_mail import repository
from dsrflow.inbound_mail.models import ImapSyncState
from dsrflow.inbound_mail.schemas import Claim, ImapOrigin

log = logging.getLogger(__name__)


class ClaimLost(Exception):
    """Another poller holds the mailbox now; stop reading it."""


def claim_mailbox(
    session: Session, mailbox: str, uidvalidity: int, *, lease_seconds: float
) -> Claim | None:
    """Take the folder for reading, and commit; None while another poller holds it.

    A changed UIDVALIDITY means the server renumbered the folder: it is read again from the
    start (Message-IDs already recorded are recognised, so nothing is taken twice).
    """
    now = utcnow()
    token = secrets.token_hex(16)
    try:
        state = repository.sync_state(session, mailbox, lock=True)
        if state is None:
            if repository.sync_state(session, mailbox) is not None:  # locked by another
                session.rollback()
                return None
            state = ImapSyncState(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=0)
            session.add(state)
            session.flush()
        if state.claimed_by and state.claimed_until and state.claimed_until > now:
            session.rollback()
            return None
        reset = state.uidvalidity is not None and state.uidvalidity != uidvalidity
        if reset:
            log.warning(
                "%s: UIDVALIDITY changed (%s -> %s); reading the folder again",
                mailbox,
                state.uidvalidity,
                uidvalidity,
            )
            state.last_uid = 0
        state.uidvalidity = uidvalidity
        state.claimed_by = token
        state.claimed_until = now + timedelta(seconds=lease_seconds)
        state.updated_at = now
        session.add(state)
        session.commit()
    except IntegrityError:  # another poller created the row first
        session.rollback()
        return None
    assert state.id is not None
    return Claim(
        sync_state_id=state.id,
        mailbox=mailbox,
        token=token,
        uidvalidity=uidvalidity,
        last_uid=int(state.last_uid),
        reset=reset,
        lease_seconds=lease_seconds,
    )


def skip_uid(session: Session, origin: ImapOrigin) -> None:
    """Record a UID as read without a message (it vanished before it could be fetched)."""
    now = utcnow()
    try:
        advance(session, origin, now)
        session.commit()
    except ClaimLost:
        session.rollback()
        raise


def release_mailbox(session: Session, claim: Claim) -> None:
    """Let go of the folder, and commit."""
    repository.release_sync_state(session, claim.sync_state_id, claim=claim.token, now=utcnow())
    session.commit()


def advance(session: Session, origin: ImapOrigin | None, now: datetime) -> None:
    """Move the folder's last UID to ``origin``'s and renew the claim (not committed);
    raise ClaimLost when the claim is gone."""
    if origin is None:
        return
    if not repository.advance_sync_state(
        session,
        origin.sync_state_id,
        claim=origin.claim,
        uidvalidity=origin.uidvalidity,
        uid=origin.uid,
        claimed_until=now + timedelta(seconds=origin.lease_seconds),
        now=now,
    ):
        raise ClaimLost(origin.mailbox)
