"""Mail senders: the ``EmailSender`` protocol, SMTP (aiosmtplib) and the Maildir default, and
the delivery failures they raise (temporary, permanent, server unreachable)."""

from __future__ import annotations

import asyncio
import mailbox
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from dsrflow.config import Settings

# ---------------------------------------------------------------------------- failures


class DeliveryError(Exception):
    """A message was not delivered; ``answer`` is the server's reply (or what went wrong)."""

    def __init__(self, answer: str):
        super().__init__(answer)
        self.answer = answer


class TemporaryFailure(DeliveryError):
    """Worth trying again later: a 4xx reply, a timeout, a dropped connection."""


class PermanentFailure(DeliveryError):
    """Will never work: a 5xx reply, a refused or malformed address."""


class ServerUnreachable(TemporaryFailure):
    """No message could be handed over at all (connect, TLS or AUTH failed): not the message's
    fault, so it costs the message no attempt."""


# ---------------------------------------------------------------------------- senders


class EmailSender(Protocol):
    """Delivers built messages. ``send`` opens the connection on first use and reuses it;
    ``close`` ends it (a closed sender reconnects on its next ``send``)."""

    async def send(self, message: EmailMessage, recipient: str) -> str:
        """Deliver ``message`` to ``recipient``; return the server's answer, or raise a
        DeliveryError (ServerUnreachable, TemporaryFailure or PermanentFailure)."""
        ...

    async def close(self) -> None: ...


def _answer(code: int, text: str) -> str:
    return f"{code} {text}".strip()


def _by_code(code: int, text: str) -> DeliveryError:
    if 500 <= code < 600:
        return PermanentFailure(_answer(code, text))
    return TemporaryFailure(_answer(code, text))


class SmtpSender:
    """SMTP submission with aiosmtplib: one connection for all messages of a flush, plain,
    STARTTLS or implicit TLS, AUTH when a user name is configured."""

    def __init__(self, settings: Settings, *, tls_context: ssl.SSLContext | None = None):
        if not settings.smtp_host:
            raise ValueError("SmtpSender needs DSRFLOW_SMTP_HOST")
        self.settings = settings
        self.tls_context = tls_context
        self._smtp: aiosmtplib.SMTP | None = None

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        default_port = {"none": 25, "starttls": 587, "tls": 465}[s.smtp_security]
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port or default_port,
            username=s.smtp_username or None,
            password=s.smtp_password.get_secret_value()
            if s.smtp_username and s.smtp_password
            else None,
            use_tls=s.smtp_security == "tls",
            # "starttls" insists on the upgrade; "none" never attempts it.
            start_tls=s.smtp_security == "starttls",
            validate_certs=s.smtp_validate_certs,
            tls_context=self.tls_context,
            timeout=s.smtp_timeout_seconds,
        )

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        await self.close()
        smtp = self._client()
        try:
            # connect() also runs EHLO, STARTTLS and AUTH as configured.
            await smtp.connect()
        except aiosmtplib.SMTPResponseException as exc:
            smtp.close()
            raise ServerUnreachable(_answer(exc.code, exc.message)) from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            smtp.close()
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        self._smtp = smtp
        return smtp

    async def send(self, message: EmailMessage, recipient: str) -> str:
        smtp = await self._connected()
        # Flattened here with the message's own policy (aiosmtplib's send_message would
        # re-flatten with its own); base64 and encoded words keep it 7-bit unless an address
        # is internationalised.
        data = message.as_bytes()
        sender = self.settings.mail_from
        utf8 = not (data.isascii() and recipient.isascii() and sender.isascii())
        try:
            _, answer = await smtp.sendmail(
                sender, [recipient], data, mail_options=["SMTPUTF8"] if utf8 else []
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            raise _by_code(first.code, first.message) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421 or not smtp.is_connected:
                await self.close()
            raise _by_code(exc.code, exc.message) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            # e.g. an internationalised address and a server without SMTPUTF8
            raise PermanentFailure(f"not supported by the server: {exc}") from exc
        except ValueError as exc:  # an address aiosmtplib will not put on the wire
            raise PermanentFailure(f"invalid address: {exc}") from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc
        return answer

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        if smtp.is_connected:
            try:
                await smtp.quit()
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                smtp.close()
        else:
            smtp.close()


class MaildirSender:
    """The default with no SMTP server: every message becomes a file in a Maildir, so nothing
    is lost and any client that reads a Maildir (`mutt -f var/maildir`) shows it."""

    def __init__(self, path: Path):
        self.path = path

    def _add(self, message: EmailMessage) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        box = mailbox.Maildir(str(self.path), create=True)
        # Maildir files use the local line ending, not SMTP's CRLF.
        return box.add(message.as_bytes(policy=message.policy.clone(linesep="\n")))

    async def send(self, message: EmailMessage, recipient: str) -> str:
        try:
            key = await asyncio.to_thread(self._add, message)
        except OSError as exc:
            raise ServerUnreachable(f"maildir {self.path}: {exc}") from exc
        return f"stored in maildir as {key}"

    async def close(self) -> None:
        return None


def sender_for(settings: Settings) -> EmailSender:
    """SMTP when ``DSRFLOW_SMTP_HOST`` is set, otherwise the Maildir under ``DATA_DIR``."""
    if settings.smtp_host:
        return SmtpSender(settings)
    return MaildirSender(settings.maildir_path)
