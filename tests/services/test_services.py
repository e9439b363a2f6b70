"""Prove the real-server helpers work (no dsrflow import, no conftest needed).

Each test skips with the ServiceUnavailable reason when a server is not installed, and
fails instead when DSRFLOW_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import imaplib
import os
import re
import socket
import ssl
from email.header import Header
from email.message import EmailMessage
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from urllib.parse import quote

import pytest

from . import REQUIRE_ENV, ServiceUnavailable, require
from .browser import chromium_driver
from .imap import ImapServer
from .postgres import PostgresCluster
from .smtp import SmtpServer

# --------------------------------------------------------------------------- helpers


def _port_closed(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except OSError:
        return True


class _Missing:
    """A service whose binary is 'missing'."""

    def __enter__(self):
        raise ServiceUnavailable("frobnicator: executable '/nonexistent/frob' not found")

    def __exit__(self, *exc):
        return None


def test_require_skips_when_service_missing(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="frobnicator"), require(_Missing):
        pass


def test_require_fails_when_services_required(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="frobnicator"), require(_Missing()):
        pass


def test_missing_binaries_raise_service_unavailable():
    with (
        pytest.raises(ServiceUnavailable, match="initdb"),
        PostgresCluster(bin_dir="/nonexistent/pg/bin"),
    ):
        pass
    with (
        pytest.raises(ServiceUnavailable, match="dovecot"),
        ImapServer(binary="/nonexistent/dovecot"),
    ):
        pass
    with (
        pytest.raises(ServiceUnavailable, match="chromium"),
        chromium_driver(binary="/nonexistent/chromium"),
    ):
        pass


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def pg():
    with require(PostgresCluster) as cluster:
        yield cluster


@pytest.mark.postgres
def test_postgres_create_database_and_select_1(pg):
    import psycopg

    url = pg.create_database("svc_check")
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/svc_check"
    assert pg.url_for("svc_check") == url
    with psycopg.connect(pg.dsn_for("svc_check")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        enc, fsync, maxc = conn.execute(
            "SELECT current_setting('server_encoding'), current_setting('fsync'),"
            " current_setting('max_connections')"
        ).fetchone()
        assert (enc, fsync, maxc) == ("UTF8", "off", "200")
        conn.execute("CREATE TABLE t (name text)")
        conn.execute("INSERT INTO t VALUES ('山田太郎')")
        conn.commit()
    # template copy, then DROP ... WITH (FORCE) while a connection is still open
    pg.create_database("svc_copy", template="svc_check")
    held = psycopg.connect(pg.dsn_for("svc_copy"))
    try:
        assert held.execute("SELECT name FROM t").fetchone() == ("山田太郎",)
        pg.drop_database("svc_copy")
    finally:
        held.close()
    pg.drop_database("svc_check")
    with psycopg.connect(pg.dsn_for("postgres")) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert not names & {"svc_check", "svc_copy"}


@pytest.mark.postgres
def test_postgres_url_works_with_sqlalchemy(pg):
    import sqlalchemy

    pg.create_database("svc_sa")
    engine = sqlalchemy.create_engine(pg.url_for("svc_sa"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
        pg.drop_database("svc_sa")


# --------------------------------------------------------------------------- SMTP


def _mail(to: str = "info@innovativeai.co.jp") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "dsrflow@example.com"
    msg["To"] = to
    msg["Subject"] = "受付番号のお知らせ"
    msg.set_content("開示請求を受け付けました。\n.dot-leading line\n")
    return msg


def _send(server: SmtpServer, msg: EmailMessage, **kw):
    import aiosmtplib

    return asyncio.run(
        aiosmtplib.send(msg, hostname=server.host, port=server.port, timeout=10, **kw)
    )


@pytest.mark.smtp
def test_smtp_plain_delivery():

    with require(SmtpServer) as smtp:
        _send(smtp, _mail())
        [got] = smtp.wait_for(1)
        assert got.mail_from == "dsrflow@example.com"
        assert got.rcpt_tos == ["info@innovativeai.co.jp"]
        assert isinstance(got.data, bytes)
        assert b"\r\n" in got.data
        parsed = got.parsed()
        assert parsed["Subject"] == "受付番号のお知らせ"
        assert ".dot-leading line" in parsed.get_content()
        assert got.tls is False
        assert got.login is None


@pytest.mark.smtp
def test_smtp_starttls_with_auth():
    import aiosmtplib

    with require(SmtpServer, starttls=True, auth=("mailer", "s3cret")) as smtp:
        assert smtp.cert_path is not None
        assert smtp.cert_path.exists()
        _send(
            smtp,
            _mail(),
            start_tls=True,
            validate_certs=False,
            username="mailer",
            password="s3cret",
        )
        [got] = smtp.wait_for(1)
        assert got.tls is True
        assert got.login == "mailer"
        # trusting the throwaway cert explicitly works too
        _send(
            smtp,
            _mail(),
            start_tls=True,
            tls_context=smtp.client_ssl_context(),
            username="mailer",
            password="s3cret",
        )
        # wrong password -> 535; no STARTTLS -> refused
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            _send(
                smtp,
                _mail(),
                start_tls=True,
                validate_certs=False,
                username="mailer",
                password="wrong",
            )
        with pytest.raises(aiosmtplib.SMTPException):
            _send(smtp, _mail(), start_tls=False, username="mailer", password="s3cret")
        assert len(smtp.messages) == 2
        cert = smtp.cert_path
    assert not cert.exists()


@pytest.mark.smtp
def test_smtp_permanent_rejection_at_rcpt():
    import aiosmtplib

    fail = {"bad@example.com": (550, "5.1.1 No such user")}
    with require(SmtpServer, fail_with=fail) as smtp:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
            _send(smtp, _mail("bad@example.com"))
        [refusal] = info.value.recipients
        assert refusal.code == 550
        assert "No such user" in refusal.message
        assert smtp.messages == []
        # mixed recipients: the good one still gets it
        errors, _ = _send(smtp, _mail(), recipients=["ok@example.com", "BAD@example.com"])
        assert errors["BAD@example.com"][0] == 550
        [got] = smtp.wait_for(1)
        assert got.rcpt_tos == ["ok@example.com"]


@pytest.mark.smtp
def test_smtp_temporary_failure_and_outage():
    import aiosmtplib

    with require(SmtpServer) as smtp:
        smtp.temporary_failure = (451, "4.3.0 Try again later")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as info:
            _send(smtp, _mail())
        assert info.value.code == 451
        smtp.temporary_failure = None
        _send(smtp, _mail())
        assert len(smtp.wait_for(1)) == 1

        port = smtp.port
        smtp.stop()
        assert not smtp.running
        assert _port_closed(smtp.host, port)
        with pytest.raises(aiosmtplib.SMTPConnectError):
            _send(smtp, _mail())
        smtp.start()
        assert smtp.port == port
        _send(smtp, _mail())
        assert len(smtp.wait_for(2)) == 2
    assert _port_closed("127.0.0.1", port)


# --------------------------------------------------------------------------- IMAP

JP_SUBJECT = "保有個人データの開示請求"
JP_BODY = "株式会社InnovativeAI 御中\n\n私の保有個人データの開示を請求します。\n山田太郎\n"


def _iso2022jp_message() -> bytes:
    msg = MIMEText(JP_BODY, "plain", "iso-2022-jp")
    msg["Subject"] = Header(JP_SUBJECT, "iso-2022-jp").encode()
    msg["From"] = "yamada@example.jp"
    msg["To"] = "info@innovativeai.co.jp"
    msg["Date"] = format_datetime(dt.datetime(2025, 4, 1, 9, 30, tzinfo=dt.UTC))
    msg["Message-ID"] = make_msgid(domain="example.jp")
    raw = msg.as_bytes()
    assert b"\x1b$B" in raw  # really ISO-2022-JP on the wire
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _check_jp(raw: bytes) -> None:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == JP_SUBJECT
    assert parsed.get_content_charset() == "iso-2022-jp"
    assert parsed.get_content().replace("\r\n", "\n") == JP_BODY


@pytest.fixture(scope="module", params=["none", "starttls", "tls"])
def imap(request):
    with require(ImapServer, ssl_mode=request.param) as server:
        yield server


async def _aioimaplib_fetch(server: ImapServer) -> list[tuple[bytes, bytes]]:
    import aioimaplib

    if server.ssl_mode == "tls":
        client = aioimaplib.IMAP4_SSL(
            server.host, server.port, ssl_context=server.client_ssl_context(), timeout=10
        )
    else:
        client = aioimaplib.IMAP4(server.host, server.port, timeout=10)
    await client.wait_hello_from_server()
    resp = await client.login(server.username, server.password)
    assert resp.result == "OK", resp
    await client.select(server.folder)
    resp = await client.uid("fetch", "1:*", "(UID INTERNALDATE BODY.PEEK[])")
    assert resp.result == "OK", resp
    await client.logout()
    out, head = [], b""
    for line in resp.lines:
        if isinstance(line, bytes) and b"FETCH" in line:
            head = line
        elif isinstance(line, bytearray):
            out.append((head, bytes(line)))
    return out


def _imaplib_fetch(server: ImapServer) -> list[tuple[bytes, bytes]]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # what an app configured to ignore the cert does
    client: imaplib.IMAP4
    if server.ssl_mode == "tls":
        client = imaplib.IMAP4_SSL(server.host, server.port, ssl_context=ctx, timeout=10)
    else:
        client = imaplib.IMAP4(server.host, server.port, timeout=10)
        if server.ssl_mode == "starttls":
            assert "STARTTLS" in client.capabilities
            client.starttls(ssl_context=ctx)
    try:
        client.login(server.username, server.password)
        client.select(server.folder, readonly=True)
        typ, data = client.uid("FETCH", "1:*", "(UID INTERNALDATE BODY.PEEK[])")
        assert typ == "OK"
        return [(bytes(h), bytes(b)) for h, b in (d for d in data if isinstance(d, tuple))]
    finally:
        client.logout()


def test_imap_deliver_iso2022jp_and_read_back(imap):
    raw = _iso2022jp_message()
    when = dt.datetime(2025, 4, 1, 18, 30, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    uid = imap.deliver(raw, internal_date=when)
    assert isinstance(uid, int)

    if imap.ssl_mode == "starttls":  # aioimaplib has no STARTTLS
        fetched = _imaplib_fetch(imap)
    else:
        fetched = asyncio.run(_aioimaplib_fetch(imap))
    [(head, body)] = [(h, b) for h, b in fetched if f"UID {uid} ".encode() in h + b" "]
    assert body == raw  # byte-exact, ISO-2022-JP escapes included
    _check_jp(body)
    # Maildir keeps only the instant (file mtime): dovecot answers in its own TZ offset.
    m = re.search(rb'INTERNALDATE "([^"]+)"', head)
    assert m, head
    assert dt.datetime.strptime(m.group(1).decode(), "%d-%b-%Y %H:%M:%S %z") == when
    assert [u for u, _, _ in imap.fetch_all()].count(uid) == 1


def test_imap_rejects_wrong_password(imap):
    if imap.ssl_mode == "tls":
        client = imaplib.IMAP4_SSL(imap.host, imap.port, ssl_context=imap.client_ssl_context())
    else:
        client = imaplib.IMAP4(imap.host, imap.port)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(imap.username, imap.password + "x")
    finally:
        client.shutdown()


@pytest.mark.imap
def test_imap_cleans_up():
    with require(ImapServer) as server:
        tmp, port = server.tmpdir, server.port
        assert re.fullmatch(r"[A-Za-z0-9_-]{10,}", server.password)
        assert server.folder == "INBOX"
        assert server.username == "dsrflow"
    assert not tmp.exists()
    assert _port_closed("127.0.0.1", port)


# --------------------------------------------------------------------------- browser


@pytest.mark.browser
def test_chromium_reads_japanese_heading():
    html = (
        '<!doctype html><html lang="ja"><meta charset="utf-8"><title>t</title>'
        "<h1>個人情報の開示請求フォーム</h1>"
        "<script>document.title = navigator.language</script>"
    )
    with require(chromium_driver) as driver:
        from selenium.webdriver.common.by import By

        driver.get("data:text/html;charset=utf-8," + quote(html))
        assert driver.find_element(By.TAG_NAME, "h1").text == "個人情報の開示請求フォーム"
        assert driver.title.startswith("ja")
        profile = driver.capabilities.get("chrome", {}).get("userDataDir")
        assert profile
        assert "dsrflow-chrome-" in profile
    assert not os.path.exists(profile)
