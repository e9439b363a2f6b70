"""Real servers for the test suite: PostgreSQL, SMTP (aiosmtpd), IMAP (dovecot), Chromium.

Every helper is a plain context manager (no pytest dependency at import time). When the
server binary (or the Python library driving it) is missing, entering it raises
:class:`ServiceUnavailable`; the conftest turns that into a skip, or into a failure when
``DSRFLOW_REQUIRE_SERVICES=1`` (as in CI), via :func:`require` / :func:`unavailable`.

A server that *is* installed but fails to start raises :class:`ServiceStartError` (never
skipped: that is a real problem), with the tail of the server log in the message.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

__all__ = [
    "REQUIRE_ENV",
    "Server",
    "ServiceStartError",
    "ServiceUnavailable",
    "free_port",
    "require",
    "services_required",
    "unavailable",
]

REQUIRE_ENV = "DSRFLOW_REQUIRE_SERVICES"


class ServiceUnavailable(RuntimeError):
    """A server binary / library needed by a test helper is not installed here."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServiceStartError(RuntimeError):
    """The server is installed but did not come up (config or environment problem)."""


class Server:
    """A server run for the tests: ``with Server() as s`` starts it and always stops it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- skip / fail


def services_required() -> bool:
    """True when env DSRFLOW_REQUIRE_SERVICES=1 (missing servers must fail, not skip)."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def unavailable(reason: str | BaseException) -> None:
    """Skip the current test/fixture, or fail it when DSRFLOW_REQUIRE_SERVICES=1. Never returns."""
    import pytest

    text = str(reason)
    if services_required():
        pytest.fail(f"required service unavailable ({REQUIRE_ENV}=1): {text}", pytrace=False)
    pytest.skip(f"service unavailable: {text}")


@contextlib.contextmanager
def require(cm_or_factory: Any, /, *args: Any, **kwargs: Any) -> Iterator[Any]:
    """Enter a service context manager, turning ServiceUnavailable into skip (or fail).

    ``cm_or_factory`` is either a context manager instance (``PostgresCluster()``) or a
    callable returning one (``PostgresCluster``, ``chromium_driver``), called with
    ``*args, **kwargs``.  Usage in a conftest::

        @pytest.fixture(scope="session")
        def pg():
            with require(PostgresCluster) as cluster:
                yield cluster

    Errors other than ServiceUnavailable propagate unchanged.
    """
    with contextlib.ExitStack() as stack:
        try:
            cm = cm_or_factory
            if not hasattr(type(cm), "__enter__"):  # a class / factory, not an instance
                cm = cm_or_factory(*args, **kwargs)
            elif args or kwargs:
                raise TypeError("arguments given together with a context manager instance")
            value = stack.enter_context(cm)
        except ServiceUnavailable as exc:
            unavailable(exc.reason)
        yield value


# --------------------------------------------------------------------------- small utilities


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_binary(name_or_path: str, what: str | None = None) -> str:
    """Absolute path of an executable, or ServiceUnavailable."""
    if os.sep in name_or_path:
        if os.path.isfile(name_or_path) and os.access(name_or_path, os.X_OK):
            return name_or_path
        found = None
    else:
        found = shutil.which(name_or_path)
    if not found:
        raise ServiceUnavailable(f"{what or name_or_path}: executable {name_or_path!r} not found")
    return found


def is_root() -> bool:
    return os.geteuid() == 0


def unprivileged_user(*candidates: str) -> pwd.struct_passwd:
    """The first existing user among ``candidates`` (for servers that refuse root)."""
    for name in candidates:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServiceUnavailable(
        f"running as root but none of the unprivileged users {candidates!r} exists"
    )


def make_tempdir(prefix: str, owner: pwd.struct_passwd | None = None, mode: int = 0o700) -> Path:
    """A fresh temp dir (short path: unix socket paths must stay < 108 bytes)."""
    base = "/tmp" if os.path.isdir("/tmp") else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    os.chmod(path, mode)
    return path


def remove_tree(path: str | os.PathLike[str] | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def log_tail(path: str | os.PathLike[str], lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def make_self_signed_cert(
    directory: str | os.PathLike[str], cn: str = "localhost"
) -> tuple[Path, Path]:
    """Throwaway self-signed cert+key (EC P-256) made with the ``openssl`` CLI.

    Returns ``(cert_path, key_path)``; SAN covers ``localhost`` and ``127.0.0.1``.
    """
    openssl = find_binary("openssl", "openssl (for self-signed test certificates)")
    d = Path(directory)
    cert, key = d / "cert.pem", d / "key.pem"
    cmd = [
        openssl,
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-subj",
        f"/CN={cn}",
        "-addext",
        f"subjectAltName=DNS:{cn},DNS:localhost,IP:127.0.0.1",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise ServiceStartError(f"openssl failed ({res.returncode}): {res.stderr.strip()}")
    os.chmod(key, 0o600)
    return cert, key


def run_checked(cmd: list[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if res.returncode != 0:
        raise ServiceStartError(
            f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n"
            f"{(res.stdout + res.stderr).strip()}"
        )
    return res
