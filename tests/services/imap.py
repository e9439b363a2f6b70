"""A throwaway dovecot IMAP server (``dovecot -F -c CONFIG``) on a free 127.0.0.1 port.

    with ImapServer() as imap:               # ssl_mode="none" | "starttls" | "tls"
        imap.deliver(raw_bytes)              # APPEND into INBOX as the test user
        ... point the app at imap.host / imap.port / imap.username / imap.password ...

Everything (config, passwd-file, Maildir, sockets, state, logs) lives in one temp dir;
nothing under /etc or /var is touched.  As root, dovecot's login/internal processes run as
``dovenull``/``dovecot`` (or ``nobody``) and the mail user is ``nobody``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import imaplib
import os
import pwd
import re
import secrets
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Literal

from . import (
    Server,
    ServiceStartError,
    ServiceUnavailable,
    find_binary,
    free_port,
    is_root,
    log_tail,
    make_self_signed_cert,
    make_tempdir,
    port_open,
    remove_tree,
)

DEFAULT_DOVECOT = "/usr/sbin/dovecot"

SslMode = Literal["none", "starttls", "tls"]


def dovecot_version(binary: str) -> tuple[int, ...]:
    """``dovecot --version`` as a tuple, e.g. (2, 3, 19, 1)."""
    res = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    m = re.match(r"\s*(\d+(?:\.\d+)*)", res.stdout)
    if res.returncode != 0 or not m:
        raise ServiceStartError(f"cannot parse `{binary} --version`: {res.stdout}{res.stderr}")
    return tuple(int(x) for x in m.group(1).split("."))


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


class ImapServer(Server):
    """Context manager: dovecot serving one Maildir user over IMAP.

    Constructor args (keyword-only, all optional):
      ssl_mode       -- "none" (plain IMAP, ssl=no), "starttls" (plain port offering
                        STARTTLS, self-signed cert) or "tls" (implicit TLS, IMAPS)
      username       -- login name (default "dsrflow"); password is random
      password       -- fixed password instead of a random one
      binary         -- dovecot executable (env DSRFLOW_DOVECOT, default /usr/sbin/dovecot)
      start_timeout  -- seconds to wait for the port (default 15)

    Attributes: host, port, username, password, folder ("INBOX"), ssl_mode, cert_path
    (None for "none"), tmpdir, maildir, log_path, version (tuple).
    Methods: deliver(raw, internal_date=None, flags=()) -> uid, connect() -> logged-in
    imaplib client, fetch_all() -> [(uid, flags, raw)], client_ssl_context().
    """

    host = "127.0.0.1"
    folder = "INBOX"

    def __init__(
        self,
        *,
        ssl_mode: SslMode = "none",
        username: str = "dsrflow",
        password: str | None = None,
        binary: str | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        if ssl_mode not in ("none", "starttls", "tls"):
            raise ValueError(f"ssl_mode must be none|starttls|tls, not {ssl_mode!r}")
        self.ssl_mode: SslMode = ssl_mode
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.binary = binary or os.environ.get("DSRFLOW_DOVECOT") or DEFAULT_DOVECOT
        self.start_timeout = start_timeout
        self.port = 0
        self.version: tuple[int, ...] = ()
        self.tmpdir: Path | None = None
        self.maildir: Path | None = None
        self.log_path: Path | None = None
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if os.sep in self.binary:
            if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
                raise ServiceUnavailable(
                    f"IMAP: dovecot not found at {self.binary} (apt-get install dovecot-imapd)"
                )
        else:
            self.binary = find_binary(self.binary, "IMAP (dovecot)")
        self.version = dovecot_version(self.binary)
        self.tmpdir = make_tempdir("dsrflow-imap-", mode=0o755)
        try:
            if self.ssl_mode != "none":
                self.cert_path, self.key_path = make_self_signed_cert(self.tmpdir)
            last_log = ""
            for _attempt in range(3):
                self.port = free_port(self.host)
                conf = self._write_files()
                if self._launch(conf):
                    return
                last_log = log_tail(self.log_path) if self.log_path else ""
                if "in use" not in last_log:
                    break
            raise ServiceStartError(
                f"dovecot {'.'.join(map(str, self.version))} did not start on "
                f"{self.host}:{self.port}\n--- log ---\n{last_log}"
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.poll() is None:
                # SIGTERM the whole group (master + children: faster than letting the
                # master wait ~1 s for its children), then SIGKILL whatever is left.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.3)
            if proc is not None:
                # anything left in dovecot's process group (it runs in its own session)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        finally:
            remove_tree(self.tmpdir)
            self.tmpdir = None

    def _launch(self, conf: Path) -> bool:
        assert self.tmpdir is not None
        assert self.log_path is not None
        out = open(self.tmpdir / "stdout.log", "ab")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [self.binary, "-F", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(self.tmpdir),
                start_new_session=True,
            )
        finally:
            out.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if port_open(self.host, self.port) and self._greets():
                return True
            if "Fatal:" in log_tail(self.log_path, 200):  # a child keeps dying: give up
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)  # master and any children
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)
        self._proc = None
        with contextlib.suppress(OSError):
            extra = (self.tmpdir / "stdout.log").read_text(errors="replace")
            if extra.strip():
                with open(self.log_path, "a") as f:
                    f.write(extra)
        return False

    def _greets(self) -> bool:
        """True once a connection gets the ``* OK`` greeting (imap-login is up)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                if self.ssl_mode == "tls":
                    ctx = ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    with ctx.wrap_socket(sock) as tls:
                        return tls.recv(1024).startswith(b"* OK")
                return sock.recv(1024).startswith(b"* OK")
        except OSError:
            return False

    # ------------------------------------------------------------------ config

    def _accounts(self) -> tuple[str, str, str, pwd.struct_passwd]:
        """(login_user, internal_user, internal_group, mail_user)."""
        if not is_root():
            me = pwd.getpwuid(os.geteuid())
            return me.pw_name, me.pw_name, grp.getgrgid(me.pw_gid).gr_name, me
        mail = _user("nobody")
        if mail is None:
            raise ServiceUnavailable("IMAP: running as root but user 'nobody' does not exist")
        login = _user("dovenull") or mail
        internal = _user("dovecot") or mail
        return login.pw_name, internal.pw_name, grp.getgrgid(internal.pw_gid).gr_name, mail

    def _write_files(self) -> Path:
        t = self.tmpdir
        assert t is not None
        login_user, internal_user, internal_group, mail = self._accounts()
        for sub in ("run", "state"):
            (t / sub).mkdir(exist_ok=True)
        home = t / "home"
        home.mkdir(exist_ok=True)
        os.chmod(home, 0o700)
        if is_root():
            os.chown(home, mail.pw_uid, mail.pw_gid)
        self.maildir = home / "Maildir"
        self.log_path = t / "dovecot.log"
        users = t / "users"
        users.write_text(
            f"{self.username}:{{PLAIN}}{self.password}:{mail.pw_uid}:{mail.pw_gid}::{home}::\n"
        )
        os.chmod(users, 0o644)
        mode = self.ssl_mode
        imap_port = 0 if mode == "tls" else self.port
        imaps_port = self.port if mode == "tls" else 0
        new_syntax = self.version >= (2, 4)
        # an unprivileged master cannot chroot its login/anvil children
        chroot = "" if is_root() else "  chroot =\n"
        ssl_value = "no" if mode == "none" else "yes"
        lines: list[str] = []
        if new_syntax:
            # Dovecot 2.4 renamed most settings; untested here (Debian 12 ships 2.3.19).
            lines += [
                "dovecot_config_version = 2.4.0",
                "dovecot_storage_version = 2.4.0",
                "auth_allow_cleartext = yes",
                f"passdb passwd-file {{\n  passwd_file_path = {users}\n}}",
                f"userdb passwd-file {{\n  passwd_file_path = {users}\n}}",
                "mail_driver = maildir",
                "mail_path = ~/Maildir",
            ]
            if mode != "none":
                lines += [
                    f"ssl_server_cert_file = {self.cert_path}",
                    f"ssl_server_key_file = {self.key_path}",
                ]
        else:
            lines += [
                "disable_plaintext_auth = no",
                "passdb {\n  driver = passwd-file\n"
                f"  args = scheme=PLAIN username_format=%u {users}\n}}",
                f"userdb {{\n  driver = passwd-file\n  args = username_format=%u {users}\n}}",
                "mail_location = maildir:~/Maildir",
            ]
            if mode != "none":
                lines += [f"ssl_cert = <{self.cert_path}", f"ssl_key = <{self.key_path}"]
        lines += [
            "protocols = imap",
            f"listen = {self.host}",
            f"base_dir = {t / 'run'}",
            f"state_dir = {t / 'state'}",
            f"instance_name = {t.name}",
            f"log_path = {self.log_path}",
            f"info_log_path = {self.log_path}",
            f"debug_log_path = {self.log_path}",
            f"default_login_user = {login_user}",
            f"default_internal_user = {internal_user}",
            f"default_internal_group = {internal_group}",
            f"mail_uid = {mail.pw_uid}",
            f"mail_gid = {mail.pw_gid}",
            "first_valid_uid = 1",
            "first_valid_gid = 1",
            "auth_mechanisms = plain login",
            "auth_failure_delay = 0",
            "mail_fsync = never",
            f"ssl = {ssl_value}",
            "namespace inbox {\n  inbox = yes\n  separator = /\n}",
            "protocol imap {\n  mail_max_userip_connections = 200\n}",
            "service imap-login {\n"
            f"{chroot}"
            f"  inet_listener imap {{\n    port = {imap_port}\n  }}\n"
            f"  inet_listener imaps {{\n    port = {imaps_port}\n  }}\n"
            "}",
        ]
        if chroot:
            lines.append("service anvil {\n" + chroot + "}")
        conf = t / "dovecot.conf"
        conf.write_text("\n".join(lines) + "\n")
        os.chmod(conf, 0o644)
        return conf

    # ------------------------------------------------------------------ clients

    def client_ssl_context(self) -> ssl.SSLContext:
        """SSLContext trusting this server's self-signed certificate."""
        if self.cert_path is None:
            raise RuntimeError("ImapServer(ssl_mode='none') has no certificate")
        return ssl.create_default_context(cafile=str(self.cert_path))

    def connect(self, timeout: float = 10.0) -> imaplib.IMAP4:
        """An imaplib client logged in as the test user (STARTTLS/TLS as configured)."""
        client: imaplib.IMAP4
        if self.ssl_mode == "tls":
            client = imaplib.IMAP4_SSL(
                self.host, self.port, ssl_context=self.client_ssl_context(), timeout=timeout
            )
        else:
            client = imaplib.IMAP4(self.host, self.port, timeout=timeout)
            if self.ssl_mode == "starttls":
                client.starttls(ssl_context=self.client_ssl_context())
        client.login(self.username, self.password)
        return client

    def deliver(
        self,
        raw: bytes,
        internal_date: dt.datetime | None = None,
        flags: tuple[str, ...] | list[str] = (),
        folder: str | None = None,
    ) -> int | None:
        """APPEND ``raw`` (bare LF is sent as CRLF) to INBOX; returns the new UID."""
        client = self.connect()
        try:
            date = imaplib.Time2Internaldate(internal_date) if internal_date else None
            flag_str = f"({' '.join(flags)})" if flags else None
            typ, data = client.append(folder or self.folder, flag_str, date, raw)
            if typ != "OK":
                raise RuntimeError(f"IMAP APPEND failed: {typ} {data!r}")
            m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            return int(m.group(1)) if m else None
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def fetch_all(self, folder: str | None = None) -> list[tuple[int, tuple[str, ...], bytes]]:
        """Every message in ``folder``: (uid, flags, raw RFC822 bytes)."""
        client = self.connect()
        try:
            client.select(folder or self.folder, readonly=True)
            typ, data = client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            out: list[tuple[int, tuple[str, ...], bytes]] = []
            if typ != "OK":
                return out
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, body = item
                uid = re.search(rb"UID (\d+)", head)
                fl = re.search(rb"FLAGS \(([^)]*)\)", head)
                out.append(
                    (
                        int(uid.group(1)) if uid else 0,
                        tuple(fl.group(1).decode().split()) if fl else (),
                        bytes(body),
                    )
                )
            return out
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def __repr__(self) -> str:
        return f"<ImapServer {self.host}:{self.port} ssl={self.ssl_mode} user={self.username}>"
