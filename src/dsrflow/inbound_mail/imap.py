"""The IMAP poller: reads the configured folder and ingests each new message exactly once.

Exactly once, and nothing lost:

* The folder's UIDVALIDITY and the last UID committed are kept in ``imap_sync_state``. Each
  message's row and the new last UID are committed in one transaction; only then is the message
  flagged ``\\Seen $DsrflowIngested`` on the server. A crash before the commit leaves the UID
  unread, so the message is fetched again; a crash after it leaves the message recorded (its
  Message-ID is unique) and the flag is set by the next poll.
* A changed UIDVALIDITY (the server renumbered the folder) starts the folder again from UID 1;
  messages already recorded are recognised by their Message-ID.
* Where several processes poll, each first claims the folder's sync-state row in the database
  (a lease, renewed as it progresses; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL). Only the holder
  reads and records; the others do nothing, and take over when a holder's lease runs out.

``poll_once`` is the scheduler job (id ``imap_poll``); ``watch`` waits on IMAP IDLE between polls
where the server offers it, so new mail is read within seconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import aioimaplib
from sqlmodel import Session

from dsrflow.config import Settings
from dsrflow.inbound_mail.mailbox import ClaimLost, claim_mailbox, release_mailbox, skip_uid
from dsrflow.inbound_mail.reading import ingest
from dsrflow.inbound_mail.rules_file import IntakeRulesError, rules_for
from dsrflow.inbound_mail.schemas import Claim, ImapOrigin, IngestOutcome
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)

KEYWORD = "$DsrflowIngested"
CLAIM_LEASE_SECONDS = 300.0
BATCH_SIZE = 200
# Servers may end an IDLE after 30 minutes (RFC 2177); renew well before.
IDLE_RENEW_SECONDS = 25 * 60
POLL_INTERVAL_SECONDS = 60.0
TIMEOUT_SECONDS = 60.0


class ImapError(Exception):
    """The server refused something (login, select, fetch, store)."""


@dataclass
class PollReport:
    """What one poll did."""

    mailbox: str | None = None
    uidvalidity: int | None = None
    reset: bool = False  # UIDVALIDITY changed: the folder was read again from the start
    busy: bool = False  # another poller holds the folder
    more: bool = False  # stopped at the batch size; more messages wait
    fetched: int = 0
    flagged: int = 0
    repaired: int = 0  # recorded earlier, flagged only now (a crash between commit and flag)
    outcomes: list[IngestOutcome] = field(default_factory=list)
    skipped: str | None = None  # not configured
    error: str | None = None

    @property
    def recorded(self) -> int:
        return sum(not o.duplicate for o in self.outcomes)

    def summary(self) -> str:
        if self.skipped:
            return f"IMAP poll skipped: {self.skipped}"
        if self.busy:
            return f"{self.mailbox}: another poller holds it"
        text = (
            f"{self.mailbox}: fetched {self.fetched}, recorded {self.recorded}, "
            f"flagged {self.flagged}" + (f", repaired {self.repaired}" if self.repaired else "")
        )
        if self.reset:
            text += " (UIDVALIDITY changed: read again)"
        return text + (f"; error: {self.error}" if self.error else "")


def mailbox_key(settings: Settings) -> str:
    """How the sync state names the folder: ``user@host:port/folder``."""
    return f"{settings.imap_username}@{settings.imap_host}:{_port(settings)}/{settings.imap_folder}"


def _port(settings: Settings) -> int:
    return settings.imap_port or (993 if settings.imap_security == "tls" else 143)


async def connect(
    settings: Settings, *, ssl_context: ssl.SSLContext | None = None
) -> aioimaplib.IMAP4:
    """A logged-in client, over TLS, STARTTLS or plain as ``IMAP_SECURITY`` says.

    STARTTLS is required when configured: a server that does not offer it is an error, never a
    silent fall back to plain text. Certificates are verified (a private CA: SSL_CERT_FILE).
    """
    host, port = settings.imap_host or "", _port(settings)
    context = ssl_context or ssl.create_default_context()
    client: aioimaplib.IMAP4
    if settings.imap_security == "tls":
        client = aioimaplib.IMAP4_SSL(host, port, timeout=TIMEOUT_SECONDS, ssl_context=context)
    else:
        client = aioimaplib.IMAP4(host, port, timeout=TIMEOUT_SECONDS)
    try:
        await client.wait_hello_from_server()
        if settings.imap_security == "starttls":
            await _starttls(client, host, context)
        password = settings.imap_password.get_secret_value() if settings.imap_password else ""
        response = await client.login(settings.imap_username or "", password)
        if response.result != "OK":
            raise ImapError(f"login refused: {_text(response.lines)}")
    except BaseException:
        await _close(client)
        raise
    return client


async def _starttls(client: aioimaplib.IMAP4, host: str, context: ssl.SSLContext) -> None:
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise ImapError("the server does not offer STARTTLS")
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    response = await asyncio.wait_for(protocol.execute(command), TIMEOUT_SECONDS)
    if response.result != "OK":
        raise ImapError(f"STARTTLS refused: {_text(response.lines)}")
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(
        protocol.transport, protocol, context, server_hostname=host
    )
    # Capabilities before TLS may have been forged; ask again (RFC 3501 6.2.1).
    await asyncio.wait_for(protocol.capability(), TIMEOUT_SECONDS)


async def _close(client: aioimaplib.IMAP4) -> None:
    try:
        if client.get_state() in ("AUTH", "SELECTED", "NONAUTH"):
            await asyncio.wait_for(client.logout(), 5)
    except Exception:
        pass
    transport = getattr(client.protocol, "transport", None)
    if transport is not None:
        transport.close()


@dataclass(frozen=True)
class _Folder:
    uidvalidity: int
    keywords: bool  # custom flags allowed (PERMANENTFLAGS \*)


async def _select(client: aioimaplib.IMAP4, folder: str) -> _Folder:
    response = await client.select(quote_mailbox(folder))
    if response.result != "OK":
        raise ImapError(f"cannot select {folder!r}: {_text(response.lines)}")
    text = _text(response.lines)
    uidvalidity = re.search(r"\[UIDVALIDITY (\d+)\]", text)
    if uidvalidity is None:
        raise ImapError(f"{folder!r}: the server gave no UIDVALIDITY")
    permanent = re.search(r"\[PERMANENTFLAGS \(([^)]*)\)\]", text)
    flags = permanent.group(1).split() if permanent else []
    return _Folder(int(uidvalidity.group(1)), "\\*" in flags or KEYWORD in flags)


async def poll_once(
    rt: Runtime,
    *,
    ssl_context: ssl.SSLContext | None = None,
    lease_seconds: float = CLAIM_LEASE_SECONDS,
    batch_size: int = BATCH_SIZE,
) -> PollReport:
    """Read what is new in the folder once: claim it, ingest each new message (commit, then
    flag), let go. Never raises for a server or database problem: it is in ``error``, and
    what was not committed is read by the next poll."""
    settings = rt.settings
    if not settings.imap_host or not settings.imap_username:
        return PollReport(skipped="IMAP is not configured (DSRFLOW_IMAP_HOST, _USERNAME)")
    report = PollReport(mailbox=mailbox_key(settings))
    client: aioimaplib.IMAP4 | None = None
    claim: Claim | None = None
    try:
        client = await connect(settings, ssl_context=ssl_context)
        folder = await _select(client, settings.imap_folder)
        report.uidvalidity = folder.uidvalidity
        claim = await asyncio.to_thread(
            _claim, rt, report.mailbox or "", folder.uidvalidity, lease_seconds
        )
        if claim is None:
            report.busy = True
            return report
        report.reset = claim.reset
        await _read(rt, client, folder, claim, report, batch_size)
        await asyncio.to_thread(_release, rt, claim)
        claim = None
    except (ClaimLost, ImapError, IntakeRulesError) as exc:
        report.error = str(exc) or type(exc).__name__
        log.warning("IMAP poll of %s stopped: %s", report.mailbox, report.error)
    except (OSError, TimeoutError, aioimaplib.AioImapException, ssl.SSLError) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        log.warning("IMAP poll of %s failed: %s", report.mailbox, report.error)
    except Exception as exc:  # a database problem, or a bug: logged, retried next poll
        report.error = f"{type(exc).__name__}: {exc}"
        log.exception("IMAP poll of %s failed", report.mailbox)
    finally:
        if claim is not None:
            try:
                await asyncio.to_thread(_release, rt, claim)
            except Exception:
                log.warning("could not release the claim on %s", report.mailbox, exc_info=True)
        if client is not None:
            await _close(client)
    if report.fetched or report.error or report.repaired:
        log.info(report.summary())
    return report


async def _read(
    rt: Runtime,
    client: aioimaplib.IMAP4,
    folder: _Folder,
    claim: Claim,
    report: PollReport,
    batch_size: int,
) -> None:
    flags = f"(\\Seen {KEYWORD})" if folder.keywords else "(\\Seen)"
    if folder.keywords and claim.last_uid > 0:
        # Recorded, but the flag was not set (a crash between commit and flag).
        unflagged = await _search(client, f"UID 1:{claim.last_uid}", "UNKEYWORD", KEYWORD)
        unflagged = [uid for uid in unflagged if uid <= claim.last_uid]
        if unflagged:
            await _flag(client, unflagged, flags)
            report.repaired = len(unflagged)
    criteria = ["UNKEYWORD", KEYWORD] if folder.keywords else []
    new = [
        uid
        for uid in await _search(client, f"UID {claim.last_uid + 1}:*", *criteria)
        if uid > claim.last_uid
    ]
    report.more = len(new) > batch_size
    limit = rules_for(rt).limits.max_message_bytes
    for uid in new[:batch_size]:
        origin = ImapOrigin(
            sync_state_id=claim.sync_state_id,
            mailbox=claim.mailbox,
            uidvalidity=claim.uidvalidity,
            uid=uid,
            claim=claim.token,
            lease_seconds=claim.lease_seconds,
        )
        fetched = await _fetch(client, uid, limit)
        if fetched is None:  # expunged meanwhile
            await asyncio.to_thread(_skip, rt, origin)
            continue
        raw, internal_date, size = fetched
        report.fetched += 1
        outcome = await asyncio.to_thread(
            ingest,
            rt,
            raw,
            source="imap",
            received_at=internal_date,
            original_size=size,
            origin=origin,
        )
        report.outcomes.append(outcome)
        await _flag(client, [uid], flags)
        report.flagged += 1


def _claim(rt: Runtime, mailbox: str, uidvalidity: int, lease_seconds: float) -> Claim | None:
    with Session(rt.db, expire_on_commit=False) as session:
        return claim_mailbox(session, mailbox, uidvalidity, lease_seconds=lease_seconds)


def _release(rt: Runtime, claim: Claim) -> None:
    with Session(rt.db, expire_on_commit=False) as session:
        release_mailbox(session, claim)


def _skip(rt: Runtime, origin: ImapOrigin) -> None:
    with Session(rt.db, expire_on_commit=False) as session:
        skip_uid(session, origin)


async def _search(client: aioimaplib.IMAP4, *criteria: str) -> list[int]:
    response = await client.uid_search(*criteria, charset=None)
    if response.result != "OK":
        raise ImapError(f"UID SEARCH refused: {_text(response.lines)}")
    uids: set[int] = set()
    for line in response.lines[:-1]:
        if isinstance(line, bytes | bytearray):
            uids.update(int(token) for token in bytes(line).split() if token.isdigit())
    return sorted(uids)


async def _fetch(
    client: aioimaplib.IMAP4, uid: int, limit: int
) -> tuple[bytes, datetime | None, int] | None:
    """(raw bytes, INTERNALDATE, size) of one message; only the header when over ``limit``."""
    response = await client.uid("fetch", str(uid), "(UID RFC822.SIZE INTERNALDATE)")
    if response.result != "OK":
        raise ImapError(f"UID FETCH {uid} refused: {_text(response.lines)}")
    attributes = _fetch_items(response.lines).get(uid)
    if attributes is None:
        return None
    size = int(attributes[0].get("RFC822.SIZE") or 0)
    internal_date = parse_internaldate(attributes[0].get("INTERNALDATE"))
    part = "BODY.PEEK[HEADER]" if size > limit else "BODY.PEEK[]"
    response = await client.uid("fetch", str(uid), f"(UID {part})")
    if response.result != "OK":
        raise ImapError(f"UID FETCH {uid} refused: {_text(response.lines)}")
    item = _fetch_items(response.lines).get(uid)
    if item is None or item[1] is None:
        return None
    return item[1], internal_date, size or len(item[1])


_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_ATTRIBUTE = re.compile(rb'(UID|RFC822\.SIZE) (\d+)|INTERNALDATE "([^"]+)"')


def _fetch_items(
    lines: Sequence[bytes | bytearray],
) -> dict[int, tuple[dict[str, str], bytes | None]]:
    """UID -> (attributes, literal) from a FETCH response (attributes may follow the literal)."""
    items: dict[int, tuple[dict[str, str], bytes | None]] = {}
    current: dict[str, str] | None = None
    literal: bytes | None = None

    def close() -> None:
        if current is not None and current.get("UID", "").isdigit():
            items[int(current["UID"])] = (current, literal)

    for line in lines:
        if isinstance(line, bytearray):
            literal = bytes(line)
            continue
        if _FETCH_START.match(line):
            close()
            current, literal = {}, None
        if current is None:
            continue
        for match in _ATTRIBUTE.finditer(line):
            if match.group(1):
                current[match.group(1).decode()] = match.group(2).decode()
            else:
                current["INTERNALDATE"] = match.group(3).decode()
    close()
    return items


async def _flag(client: aioimaplib.IMAP4, uids: Sequence[int], flags: str) -> None:
    for start in range(0, len(uids), 200):
        uid_set = ",".join(str(uid) for uid in uids[start : start + 200])
        response = await client.uid("store", uid_set, "+FLAGS.SILENT", flags)
        if response.result != "OK":
            raise ImapError(f"UID STORE {uid_set} refused: {_text(response.lines)}")


_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_INTERNALDATE = re.compile(
    r"\s*(\d{1,2})-(\w{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})"
)


def parse_internaldate(value: str | None) -> datetime | None:
    """An IMAP INTERNALDATE (``30-Nov-2026 10:00:00 +0900``) as aware UTC, or None."""
    match = _INTERNALDATE.match(value or "")
    if match is None or match.group(2).title() not in _MONTHS:
        return None
    day, month, year, hour, minute, second = match.group(1, 2, 3, 4, 5, 6)
    offset = timedelta(hours=int(match.group(8)), minutes=int(match.group(9)))
    zone = timezone(-offset if match.group(7) == "-" else offset)
    try:
        local = datetime(
            int(year), _MONTHS[month.title()], int(day), int(hour), int(minute), int(second)
        )
    except ValueError:
        return None
    return local.replace(tzinfo=zone).astimezone(UTC)


def quote_mailbox(name: str) -> str:
    """A folder name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=")
            out.append("&" + encoded.replace(b"/", b",").decode("ascii") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    escaped = "".join(out).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _text(lines: Sequence[bytes | bytearray | str]) -> str:
    return " ".join(
        line.decode("utf-8", "replace") if isinstance(line, bytes | bytearray) else str(line)
        for line in lines
    )


# --------------------------------------------------------------------------- IDLE


async def watch(
    rt: Runtime,
    *,
    stop: asyncio.Event | None = None,
    poll_interval: float = POLL_INTERVAL_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Poll whenever the server announces new mail (IDLE), and at least every
    ``poll_interval`` seconds; where IDLE is not offered, just every ``poll_interval``.
    Runs until ``stop`` is set; connection failures are retried with a growing pause."""
    stop = stop or asyncio.Event()
    settings = rt.settings
    if not settings.imap_host or not settings.imap_username:
        log.info("IMAP is not configured; not watching")
        return
    backoff = 1.0
    while not stop.is_set():
        client: aioimaplib.IMAP4 | None = None
        try:
            await poll_once(rt, ssl_context=ssl_context)
            client = await connect(settings, ssl_context=ssl_context)
            await _select(client, settings.imap_folder)
            backoff = 1.0
            if not client.has_capability("IDLE"):
                await _sleep(stop, poll_interval)
                continue
            while not stop.is_set():
                await _idle_round(client, stop, poll_interval)
                if not stop.is_set():
                    await poll_once(rt, ssl_context=ssl_context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("IMAP watch: %s: %s; retrying in %.0f s", type(exc).__name__, exc, backoff)
            await _sleep(stop, backoff)
            backoff = min(backoff * 2, 300.0)
        finally:
            if client is not None:
                await _close(client)


async def _idle_round(client: aioimaplib.IMAP4, stop: asyncio.Event, seconds: float) -> None:
    """IDLE until the server pushes something, ``seconds`` pass, or ``stop`` is set."""
    idle = await client.idle_start(timeout=IDLE_RENEW_SECONDS)
    push = asyncio.ensure_future(client.wait_server_push(timeout=seconds))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({push, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (push, stopped):
            task.cancel()
        await asyncio.gather(push, stopped, return_exceptions=True)
        client.idle_done()
        await asyncio.wait_for(idle, TIMEOUT_SECONDS)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
