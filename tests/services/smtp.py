"""An in-process SMTP server (aiosmtpd ``Controller``) on a free 127.0.0.1 port.

with SmtpServer(starttls=True, auth=("app", "s3cret"),
                fail_with={"bad@example.com": (550, "5.1.1 No such user")}) as smtp:
    ... point the app at smtp.host / smtp.port (trust or ignore smtp.cert_path) ...
    msg = smtp.wait_for(1)[0]
    assert msg.parsed()["Subject"] == "..."
    smtp.temporary_failure = (451, "4.3.0 Try again later")   # every MAIL FROM -> 451
    smtp.stop(); ...; smtp.start()                             # down / up, same port
"""

from __future__ import annotations

import email
import email.message
import email.policy
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from . import ServiceUnavailable, free_port, make_self_signed_cert, make_tempdir, remove_tree

Reply = tuple[int, str]


class _DropLoginDataNoise(logging.Filter):
    # aiosmtpd 1.4 logs this warning itself on every successful AUTH; it is not ours.
    def filter(self, record: logging.LogRecord) -> bool:
        return "Session.login_data is deprecated" not in str(record.msg)


logging.getLogger("mail.log").addFilter(_DropLoginDataNoise())


@dataclass
class SmtpMessage:
    """One accepted message, exactly as the client sent it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # raw DATA bytes (dot-unstuffed, CRLF line endings as sent)
    mail_options: list[str] = field(default_factory=list)
    rcpt_options: list[str] = field(default_factory=list)
    login: str | None = None  # AUTH user name, if the client authenticated
    tls: bool = False  # True when sent over a STARTTLS'd connection
    peer: Any = None
    received_at: float = field(default_factory=time.time)

    def parsed(self) -> email.message.EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


def _reply(r: Reply) -> str:
    code, text = r
    return f"{int(code)} {text}".rstrip()


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        tf = self.owner.temporary_failure
        if tf is not None:
            return _reply(tf)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.owner._failure_for(address)
        if reply is not None:
            return _reply(reply)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        auth = getattr(session, "auth_data", None)
        login = getattr(auth, "login", None)
        if isinstance(login, bytes):
            login = login.decode("utf-8", "replace")
        msg = SmtpMessage(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            mail_options=list(envelope.mail_options),
            rcpt_options=list(envelope.rcpt_options),
            login=login,
            tls=session.ssl is not None,
            peer=session.peer,
        )
        self.owner._add(msg)
        return f"250 2.0.0 OK queued as dsrflow-{len(self.owner.messages)}"


class SmtpServer:
    """Context manager: an SMTP server collecting messages in ``.messages``.

    Constructor args (keyword-only):
      starttls        -- offer STARTTLS with a throwaway self-signed cert and REQUIRE it
                         (require_starttls=True); cert at ``.cert_path``
      auth            -- (user, password): enable AUTH PLAIN/LOGIN; by default AUTH is then
                         also required before MAIL (see auth_required); AUTH over plain TCP is
                         allowed only when starttls is off (auth_require_tls = starttls)
      auth_required   -- override whether AUTH is mandatory (default: bool(auth))
      fail_with       -- {recipient: (code, text)} replies given at RCPT TO (case-insensitive)
      smtputf8        -- advertise SMTPUTF8 (default True)
      port            -- fixed port (default: a free one)

    Attributes: host, port, cert_path, key_path (None without starttls), messages,
    fail_with (mutable dict), temporary_failure ((code, text) or None: answer every MAIL
    FROM with it), running.
    Methods: start(), stop(), clear(), wait_for(count, timeout), client_ssl_context().
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        starttls: bool = False,
        auth: tuple[str, str] | None = None,
        auth_required: bool | None = None,
        fail_with: dict[str, Reply] | None = None,
        smtputf8: bool = True,
        port: int | None = None,
        ready_timeout: float = 10.0,
    ) -> None:
        self.starttls = starttls
        self.auth = auth
        self.auth_required = bool(auth) if auth_required is None else auth_required
        self.fail_with: dict[str, Reply] = dict(fail_with or {})
        self.temporary_failure: Reply | None = None
        self.smtputf8 = smtputf8
        self.ready_timeout = ready_timeout
        self._fixed_port = port
        self.port: int = port or 0
        self.messages: list[SmtpMessage] = []
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self._tmpdir: Path | None = None
        self._tls_context: ssl.SSLContext | None = None
        self._controller: Any = None
        self._cond = threading.Condition()

    # ------------------------------------------------------------------ messages

    def _add(self, msg: SmtpMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def _failure_for(self, address: str) -> Reply | None:
        if address in self.fail_with:
            return self.fail_with[address]
        low = address.lower()
        for k, v in self.fail_with.items():
            if k.lower() == low:
                return v
        return None

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[SmtpMessage]:
        """Block until at least ``count`` messages arrived; returns a copy of ``.messages``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"expected {count} message(s) on SMTP {self.host}:{self.port}, "
                        f"got {len(self.messages)} after {timeout}s"
                    )
                self._cond.wait(left)
            return list(self.messages)

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSLContext for clients that trusts this server's self-signed cert."""
        if self.cert_path is None:
            raise RuntimeError("SmtpServer started without starttls=True has no certificate")
        ctx = ssl.create_default_context(cafile=str(self.cert_path))
        return ctx

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> SmtpServer:
        try:
            self._prepare()
            self.start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()

    def _prepare(self) -> None:
        try:
            import aiosmtpd.controller  # noqa: F401
        except ImportError as exc:  # pragma: no cover - dev extra missing
            raise ServiceUnavailable(f"SMTP: aiosmtpd is not installed ({exc})") from exc
        if self.starttls and self._tls_context is None:
            self._tmpdir = make_tempdir("dsrflow-smtp-")
            self.cert_path, self.key_path = make_self_signed_cert(self._tmpdir)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
            self._tls_context = ctx

    def _make_controller(self, port: int) -> Any:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        kwargs: dict[str, Any] = {
            "server_hostname": "localhost",  # avoid a getfqdn() DNS lookup
            "ready_timeout": self.ready_timeout,
            "enable_SMTPUTF8": self.smtputf8,
            "decode_data": False,
        }
        if self.starttls:
            kwargs["tls_context"] = self._tls_context
            kwargs["require_starttls"] = True
        if self.auth is not None:
            user, password = self.auth

            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = (
                    isinstance(auth_data, LoginPassword)
                    and auth_data.login == user.encode()
                    and auth_data.password == password.encode()
                )
                if ok:
                    return AuthResult(success=True, auth_data=auth_data)
                return AuthResult(success=False, handled=False)

            kwargs["authenticator"] = authenticator
            kwargs["auth_required"] = self.auth_required
            kwargs["auth_require_tls"] = self.starttls
        return Controller(_Handler(self), hostname=self.host, port=port, **kwargs)

    def start(self) -> None:
        """(Re)start listening; after a stop() this reuses the same port."""
        if self._controller is not None:
            return
        self._prepare()
        attempts = 1 if (self._fixed_port or self.port) else 3
        last: BaseException | None = None
        for _ in range(attempts):
            port = self.port or free_port(self.host)
            controller = self._make_controller(port)
            try:
                controller.start()
            except OSError as exc:  # lost a port race
                last = exc
                controller.stop(no_assert=True)
                if self.port:
                    raise
                continue
            self._controller = controller
            self.port = port
            return
        assert last is not None
        raise last

    def stop(self) -> None:
        """Stop listening (connections are refused) but keep port, cert and messages."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def _cleanup(self) -> None:
        try:
            self.stop()
        finally:
            remove_tree(self._tmpdir)
            self._tmpdir = None

    def __repr__(self) -> str:
        state = "up" if self.running else "down"
        return f"<SmtpServer {self.host}:{self.port} {state} messages={len(self.messages)}>"
