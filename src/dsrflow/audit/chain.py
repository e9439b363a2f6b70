"""Hash chain over each request's events: an edited, inserted or deleted event breaks it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from dsrflow.audit.models import AuditHead, Event

GENESIS = "0" * 64


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _hashed_fields(event: Event) -> dict[str, Any]:
    return {
        "request_id": event.request_id,
        "seq": event.seq,
        "kind": event.kind,
        "trigger": event.trigger,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "actor": event.actor,
        "at": event.at.isoformat(timespec="microseconds"),
        "detail": event.detail,
    }


def append_event(
    session: Session,
    request_id: str,
    *,
    kind: str,
    actor: str,
    at: datetime,
    trigger: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    detail: dict[str, Any] | None = None,
    new_chain: bool = False,
) -> Event:
    """Add the next event of a request's chain to the session (the caller commits).

    The unique (request_id, seq) constraint makes a racing second append fail, not fork.
    """
    # The head holds the chain's end, so no scan of the request's events is needed.
    # ``new_chain``: the request was created in this transaction, so it has no head to read.
    found = None if new_chain else session.get(AuditHead, request_id)
    head = found or AuditHead(request_id=request_id, hash=GENESIS)
    event = Event(
        request_id=request_id,
        seq=head.seq + 1,
        kind=kind,
        trigger=trigger,
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        at=at,
        detail=detail or {},
        prev_hash=head.hash,
        hash="",
    )
    event.hash = event_hash(event.prev_hash, _hashed_fields(event))
    session.add(event)
    head.seq, head.hash = event.seq, event.hash
    session.add(head)
    return event


@dataclass(frozen=True)
class ChainBreak:
    request_id: str
    seq: int
    problem: str


def verify_events(events: Iterable[Event]) -> Iterator[ChainBreak]:
    """Check events ordered by (request_id, seq); yield every break found."""
    current: str | None = None
    prev_hash, expected_seq = GENESIS, 1
    for event in events:
        if event.request_id != current:
            current, prev_hash, expected_seq = event.request_id, GENESIS, 1
        if event.seq != expected_seq:
            yield ChainBreak(event.request_id, event.seq, f"expected seq {expected_seq}: missing")
        if event.prev_hash != prev_hash:
            yield ChainBreak(event.request_id, event.seq, "prev_hash does not match")
        if event_hash(event.prev_hash, _hashed_fields(event)) != event.hash:
            yield ChainBreak(event.request_id, event.seq, "content does not match its hash")
        prev_hash, expected_seq = event.hash, event.seq + 1


def verify_chains(session: Session) -> tuple[int, list[ChainBreak]]:
    """Recompute every chain and compare its end with the recorded head.

    Returns (events checked, breaks). The head catches deleted trailing events, which a chain
    alone cannot show.
    """
    query = select(Event).order_by(col(Event.request_id), col(Event.seq))
    events = list(session.exec(query))
    breaks = list(verify_events(events))
    tails = {event.request_id: event for event in events}
    heads = {head.request_id: head for head in session.exec(select(AuditHead))}
    for request_id in sorted(set(tails) | set(heads)):
        tail, head = tails.get(request_id), heads.get(request_id)
        if head is None or tail is None or (head.seq, head.hash) != (tail.seq, tail.hash):
            seq = tail.seq if tail else 0
            breaks.append(ChainBreak(request_id, seq, "chain end does not match the audit head"))
    return len(events), breaks
