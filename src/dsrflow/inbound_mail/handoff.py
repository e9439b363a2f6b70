"""The intake socket's protocol, and its client: ``dsrflow ingest-email`` hands one message to
the running service instead of starting the whole intake itself (docs/mail-intake.md).

Standard library only: the piped command imports this and ``dsrflow.locations``, not pydantic
or SQLAlchemy (``tests/inbound_mail/test_cli_startup.py``). The server side is ``listener``.

One connection carries one message: the client sends ``MAGIC``, then the message's length
(8 bytes, big-endian), then its bytes; the service records it and answers with the length of
a JSON object (4 bytes) and the object: ``{"exit": 0, "out": "created DSR-…", "err": ""}``,
what the command prints and the status it exits with, exactly as if it had recorded the
message itself.
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"DSRI\x01"  # protocol 1
REQUEST_HEADER = struct.Struct("!5sQ")
ANSWER_HEADER = struct.Struct("!I")
MAX_ANSWER_BYTES = 1024 * 1024

# Waiting to be accepted, and to send (a service that reads nothing for this long is not
# working: the command records the message itself).
CONNECT_SECONDS = 5.0
# Waiting for the answer once the message was sent: it is being recorded, and may already be.
ANSWER_SECONDS = 120.0

EX_TEMPFAIL = 75
UNKNOWN_OUTCOME = (
    "dsrflow: the service took the message but gave no answer ({problem}); exit 75 so that the "
    "mail server tries again later (if it was recorded, the retry reports a duplicate)"
)


@dataclass(frozen=True)
class PipeAnswer:
    """What ``dsrflow ingest-email`` prints for one message, and its exit status."""

    exit_code: int
    out: str = ""  # standard output, without the final newline
    err: str = ""  # standard error, without the final newline

    def encode(self) -> bytes:
        body = json.dumps({"exit": self.exit_code, "out": self.out, "err": self.err}).encode()
        return ANSWER_HEADER.pack(len(body)) + body

    @classmethod
    def decode(cls, body: bytes) -> PipeAnswer:
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("exit"), int):
            raise ValueError("not an answer")
        return cls(int(data["exit"]), str(data.get("out", "")), str(data.get("err", "")))


def hand_off(
    path: Path,
    raw: bytes,
    *,
    connect_seconds: float = CONNECT_SECONDS,
    answer_seconds: float = ANSWER_SECONDS,
) -> PipeAnswer | None:
    """Give ``raw`` to the service listening at ``path`` and return its answer.

    None when the service cannot have the message: no socket, a stale one (refused), or the
    message not sent whole; the caller records it itself, and nothing is recorded twice. Once
    the whole message was sent, the service may have recorded it: without an answer the
    outcome is unknown, and the answer is EX_TEMPFAIL. The mail server then delivers the
    message again, and a message already recorded is recognised by its Message-ID (or, without
    one, by the hash of its bytes) and reported as a duplicate.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(connect_seconds)
        try:
            sock.connect(str(path))
            sock.sendall(REQUEST_HEADER.pack(MAGIC, len(raw)) + raw)
        except OSError:
            return None  # the service does not have the whole message: it records nothing
        sock.settimeout(answer_seconds)
        try:
            (length,) = ANSWER_HEADER.unpack(read_exactly(sock, ANSWER_HEADER.size))
            if length > MAX_ANSWER_BYTES:
                raise ValueError("answer too long")
            return PipeAnswer.decode(read_exactly(sock, length))
        except TimeoutError:
            return PipeAnswer(EX_TEMPFAIL, err=UNKNOWN_OUTCOME.format(problem="timed out"))
        except (OSError, EOFError, ValueError) as exc:
            problem = "connection closed" if isinstance(exc, EOFError) else type(exc).__name__
            return PipeAnswer(EX_TEMPFAIL, err=UNKNOWN_OUTCOME.format(problem=problem))
    finally:
        sock.close()


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock``; EOFError if it closes first."""
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1024 * 1024))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
