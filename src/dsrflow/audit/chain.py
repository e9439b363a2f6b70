"""Hash chain over each request's events: an edited, inserted or deleted event breaks it.

Format 2 (every event since migration 0005) hashes, in place of each ``detail`` value, a digest
of it salted with a random salt of its own (``detail_salts``). Purge erases a value with its
salt and keeps the digest, so the chain still verifies and what was erased cannot be guessed
back from its digest. While a value is there, verify checks it against its digest too. Format-1
events (hashing ``detail`` itself) still verify as they always did.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy import select as sql_select
from sqlmodel import Session, col, select

from dsrflow.audit.models import EVENT_FORMAT, AuditHead, Event
from dsrflow.db import once_answered, rowcount

GENESIS = "0" * 64
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
HEADS: Table = AuditHead.__table__  # type: ignore[attr-defined]
_INSERT_EVENT = insert(EVENTS).inline()  # the new id is not read back (no RETURNING)
_INSERT_HEAD = insert(HEADS)
_READ_HEAD = sql_select(HEADS.c.seq, HEADS.c.hash).where(HEADS.c.request_id == bindparam("id"))
_MOVE_HEAD = (
    update(HEADS)
    .where(HEADS.c.request_id == bindparam("id"), HEADS.c.seq == bindparam("was"))
    .values(seq=bindparam("seq"), hash=bindparam("hash"))
)


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def value_digest(salt: str, key: str, value: Any) -> str:
    return hashlib.sha256(f"{salt}\n{key}\n{_canonical(value)}".encode()).hexdigest()


def salted_digests(detail: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(salts, digests): a fresh salt per detail key, and each value's digest."""
    salts = {key: secrets.token_hex(16) for key in detail}
    return salts, {key: value_digest(salts[key], key, value) for key, value in detail.items()}


def _hashed_fields(event: Event | SimpleNamespace) -> dict[str, Any]:
    if event.format >= 2:
        return {
            "format": event.format,
            "request_id": event.request_id,
            "seq": event.seq,
            "kind": event.kind,
            "trigger": event.trigger,
            "from_state": event.from_state,
            "to_state": event.to_state,
            "actor": event.actor,
            "at": event.at.isoformat(timespec="microseconds"),
            "detail_digest": event.detail_digest or {},
        }
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


def held_head(session: Session, request_id: str, seq: int, hash: str) -> None:
    """The head of ``request_id``'s chain as read under the request's lock in this transaction
    (``requests.repository.lock`` reads it with the request), so that ``append_event`` need not
    read it again. It holds only within the innermost transaction it was read in: a savepoint
    that rolls back takes its appends with it, and the next append reads the head again."""
    transaction = _innermost(session)
    held = session.info.get(_HELD_HEADS)
    if held is None or held[0] is not transaction:
        heads: dict[str, tuple[int, str]] = {}
        session.info[_HELD_HEADS] = (transaction, heads)
    else:
        heads = held[1]
    heads[request_id] = (seq, hash)


def _held(session: Session, request_id: str) -> tuple[int, str] | None:
    held = session.info.get(_HELD_HEADS)
    if held is None or held[0] is not _innermost(session):
        return None
    return held[1].get(request_id)


def _innermost(session: Session) -> object:
    return session.get_nested_transaction() or session.get_transaction()


_HELD_HEADS = "dsrflow.audit.held_heads"


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
) -> None:
    """Write the next event of a request's chain, in the session's transaction (the caller
    commits). Take the request's row lock first (``requests.repository.lock``).

    Events are only ever inserted, so they are written as plain inserts, without ORM objects:
    an event is a third of a decision's rows. The head holds the chain's end, so no scan of the
    request's events is needed; ``new_chain``: the request was created in this transaction, so
    it has no head to read. The unique (request_id, seq) constraint makes a racing second append
    fail, not fork, and so does the head's update, conditional on the seq it read.
    """
    # On the session's connection, without the session's autoflush: the chain's tables are
    # written only here, by these statements, so nothing pending can change what they read.
    connection = session.connection()
    seq, prev_hash = 0, GENESIS
    if not new_chain:
        head = _held(session, request_id)
        if head is None:
            head = connection.execute(_READ_HEAD, {"id": request_id}).tuples().first()
        if head is not None:
            seq, prev_hash = head
    salts, digests = salted_digests(detail or {})
    event = SimpleNamespace(
        request_id=request_id,
        seq=seq + 1,
        kind=kind,
        trigger=trigger,
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        at=at,
        detail=detail or {},
        format=EVENT_FORMAT,
        detail_salts=salts,
        detail_digest=digests,
        prev_hash=prev_hash,
    )
    event.hash = event_hash(prev_hash, _hashed_fields(event))
    connection.execute(_INSERT_EVENT, vars(event))
    if seq == 0:
        connection.execute(_INSERT_HEAD, {"request_id": request_id, "seq": 1, "hash": event.hash})
    else:
        moved = connection.execute(
            _MOVE_HEAD, {"id": request_id, "was": seq, "seq": event.seq, "hash": event.hash}
        )

        def head_moved() -> None:
            if rowcount(moved) != 1:
                raise RuntimeError(f"audit chain of {request_id} moved under us (lock it first)")

        once_answered(session, head_moved)
    if _held(session, request_id) is not None:
        held_head(session, request_id, event.seq, event.hash)


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
        elif event.format >= 2 and not _detail_matches(event):
            yield ChainBreak(event.request_id, event.seq, "detail does not match its digest")
        prev_hash, expected_seq = event.hash, event.seq + 1


def _detail_matches(event: Event) -> bool:
    """Each value still present matches its digest under its salt (an erased value has
    neither, and only its digest stays in the chain)."""
    digests, salts = event.detail_digest or {}, event.detail_salts or {}
    return all(
        key in digests and key in salts and value_digest(salts[key], key, value) == digests[key]
        for key, value in event.detail.items()
    )


def reseal(events: list[Event]) -> None:
    """Rewrite one request's intact format-1 chain (ordered by seq) in format 2: the same
    events, hashed over digests of their details. Migration 0005 does this only for chains
    that verify, so an old break is never hidden."""
    prev_hash = GENESIS
    for event in events:
        event.format = EVENT_FORMAT
        event.detail_salts, event.detail_digest = salted_digests(event.detail)
        event.prev_hash = prev_hash
        event.hash = event_hash(prev_hash, _hashed_fields(event))
        prev_hash = event.hash


def erase_detail(event: Event, keep: frozenset[str]) -> bool:
    """Erase every detail value but those named in ``keep``, with their salts (purge).
    Returns whether anything was erased. Format-1 events cannot be erased (see ``reseal``)."""
    if event.format < 2:
        return False
    kept = {k: v for k, v in event.detail.items() if k in keep}
    if kept == event.detail:
        return False
    event.detail = kept
    event.detail_salts = {k: v for k, v in (event.detail_salts or {}).items() if k in keep}
    return True


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
