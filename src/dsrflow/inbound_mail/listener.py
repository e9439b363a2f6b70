"""The intake socket: the long-running process records the messages that ``dsrflow
ingest-email`` hands it (protocol and client: ``handoff``; docs/mail-intake.md).

It runs beside the scheduler (``scheduler.runner.running_scheduler``: in ``dsrflow serve`` and
in ``dsrflow scheduler``), in threads of its own, off the event loop. One process per DATA_DIR
listens: the one that holds the lock file ``DATA_DIR/run/intake.lock`` (``flock``, held for the
process's lifetime and released by the kernel when it dies). Only the holder removes and binds
the socket, so a live listener is never displaced, and a stale socket left by a killed process
is replaced by the next one to take the lock. The others try again every few seconds and take
over when the holder stops. The socket is mode 0600 in a directory of mode 0700: only
dsrflow's user (the MTA's pipe runs as it) can connect.

Each message is recorded by ``reading.ingest_piped``, as the command would record it itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from dsrflow import locations
from dsrflow.inbound_mail.handoff import (
    EX_TEMPFAIL,
    MAGIC,
    REQUEST_HEADER,
    PipeAnswer,
    read_exactly,
)
from dsrflow.inbound_mail.reading import ingest_piped
from dsrflow.inbound_mail.rules_file import rules_for
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)

# A client that sends nothing for this long is dropped (nothing is recorded).
READ_SECONDS = 30.0
RETRY_SECONDS = 5.0  # how often a process without the lock tries to take it
WORKERS = 4  # messages recorded at once (each in its own transaction)


class IntakeListener:
    """The intake socket of ``rt``'s DATA_DIR while ``start()``..``stop()``."""

    def __init__(self, rt: Runtime, *, retry_seconds: float = RETRY_SECONDS) -> None:
        self.rt = rt
        self.socket_path = locations.intake_socket(rt.settings.data_dir)
        self.lock_path = locations.intake_lock(rt.settings.data_dir)
        self.retry_seconds = retry_seconds
        self.listening = threading.Event()  # set while this process owns the socket
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="intake-socket")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="intake-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, finish the messages being recorded, remove the socket, let go of
        the lock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._workers.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                lock = self._take_lock()
            except OSError as exc:  # DATA_DIR cannot be written: the scheduler runs on
                self._cannot_listen(exc)
                return
            if lock is None:
                self._stop.wait(self.retry_seconds)
                continue
            try:
                self._serve_while_running()
            except OSError as exc:  # e.g. a DATA_DIR path too long for a Unix socket
                self._cannot_listen(exc)
                return
            finally:
                self.listening.clear()
                with contextlib.suppress(FileNotFoundError):
                    self.socket_path.unlink()  # still ours: we hold the lock
                os.close(lock)

    def _cannot_listen(self, exc: OSError) -> None:
        log.warning(
            "intake socket %s: cannot listen (%s); ingest-email records in-process",
            self.socket_path,
            exc,
        )

    def _take_lock(self) -> int | None:
        """The lock file's descriptor, locked; None while another process holds it."""
        run_dir = self.lock_path.parent
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for the operator: who listens
        return fd

    def _serve_while_running(self) -> None:
        # Holding the lock, no other process listens here: a socket file left is stale.
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with server:
            server.bind(str(self.socket_path))
            os.chmod(self.socket_path, 0o600)  # the directory (0700) covers the moment before
            server.listen(64)
            server.settimeout(0.2)  # to notice stop()
            self.listening.set()
            log.info("intake socket %s: listening", self.socket_path)
            while not self._stop.is_set():
                try:
                    connection, _ = server.accept()
                except TimeoutError:
                    continue
                self._workers.submit(self._serve_one, connection)

    def _serve_one(self, connection: socket.socket) -> None:
        """Read one message, record it, answer. A message not received whole is not recorded."""
        with connection:
            connection.settimeout(READ_SECONDS)
            try:
                # Beyond the size limit only the header is recorded, whoever reads the rest.
                keep: int | None = rules_for(self.rt).limits.max_message_bytes
                problem = None
            except Exception as exc:  # a broken rules file: nothing is recorded (75)
                keep, problem = None, exc
            try:
                magic, size = REQUEST_HEADER.unpack(read_exactly(connection, REQUEST_HEADER.size))
                if magic != MAGIC:
                    log.warning("intake socket: not a dsrflow client; closed")
                    return
                raw = _read_message(connection, size, keep or 0)
            except (OSError, EOFError):
                log.warning("intake socket: the message did not arrive whole; nothing recorded")
                return
            if keep is None:
                answer = PipeAnswer(
                    EX_TEMPFAIL, err=f"dsrflow: cannot record the message now: {problem}"
                )
            else:
                answer = ingest_piped(self.rt, raw, size=size)  # answers every failure too
            try:
                connection.sendall(answer.encode())
            except OSError:
                # The command is gone: the mail server retries, and a message recorded now is
                # then reported as a duplicate.
                log.warning(
                    "intake socket: the answer could not be sent (exit %s)", answer.exit_code
                )


def _read_message(connection: socket.socket, size: int, keep: int) -> bytes:
    """The first ``keep`` bytes of a message of ``size``; the rest is read and dropped."""
    raw = read_exactly(connection, min(size, keep))
    left = size - len(raw)
    while left:
        chunk = connection.recv(min(left, 1024 * 1024))
        if not chunk:
            raise EOFError
        left -= len(chunk)
    return raw
