"""A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free 127.0.0.1 port.

    with PostgresCluster() as pg:
        pg.create_database("t1")
        engine = create_engine(pg.url_for("t1"))
        ...
        pg.drop_database("t1")

initdb/postgres refuse to run as root: when we are root, every server command runs as the
``postgres`` system user (or ``nobody``), and the temp dir is owned by that user.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from . import (
    Server,
    ServiceStartError,
    ServiceUnavailable,
    free_port,
    is_root,
    log_tail,
    make_tempdir,
    remove_tree,
    unprivileged_user,
)

DEFAULT_PG_BIN = "/usr/lib/postgresql/15/bin"

FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "max_connections": "200",
}


def _quote_conf(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class PostgresCluster(Server):
    """Context manager: a fresh PostgreSQL cluster, superuser ``postgres``, trust auth.

    Constructor args (all optional):
      bin_dir        -- directory with initdb/pg_ctl (env DSRFLOW_PG_BIN, default
                        /usr/lib/postgresql/15/bin)
      settings       -- extra postgresql.conf settings {name: value}
      start_timeout  -- seconds pg_ctl -w waits for the server (default 60)

    Attributes once entered: host ("127.0.0.1"), port, user ("postgres"), bin_dir,
    tmpdir (temp root), data_dir, socket_dir, log_path, os_user (who runs the server).
    """

    host = "127.0.0.1"
    user = "postgres"

    def __init__(
        self,
        bin_dir: str | os.PathLike[str] | None = None,
        *,
        settings: dict[str, Any] | None = None,
        start_timeout: int = 60,
    ) -> None:
        self.bin_dir = Path(bin_dir or os.environ.get("DSRFLOW_PG_BIN") or DEFAULT_PG_BIN)
        self.extra_settings = {k: str(v) for k, v in (settings or {}).items()}
        self.start_timeout = start_timeout
        self.port: int = 0
        self.tmpdir: Path | None = None
        self.data_dir: Path | None = None
        self.socket_dir: Path | None = None
        self.log_path: Path | None = None
        self.os_user: str | None = None
        self._run_kwargs: dict[str, Any] = {}
        self._started = False

    # ------------------------------------------------------------------ public API

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL for ``dbname`` (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def dsn_for(self, dbname: str = "postgres") -> str:
        """libpq conninfo string for ``dbname`` (for psycopg.connect)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg connection (caller closes it)."""
        import psycopg

        return psycopg.connect(self.dsn_for(dbname), **kwargs)

    def create_database(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE name [TEMPLATE template]; returns the SQLAlchemy URL."""
        from psycopg import sql

        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = stmt + sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.connect(autocommit=True) as conn:
            conn.execute(stmt)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS name WITH (FORCE) (kicks out open connections)."""
        from psycopg import sql

        stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with self.connect(autocommit=True) as conn:
            conn.execute(stmt)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        initdb = self.bin_dir / "initdb"
        pg_ctl = self.bin_dir / "pg_ctl"
        for exe in (initdb, pg_ctl, self.bin_dir / "postgres"):
            if not (exe.is_file() and os.access(exe, os.X_OK)):
                raise ServiceUnavailable(
                    f"PostgreSQL: {exe} not found (set DSRFLOW_PG_BIN to the server bin dir)"
                )
        owner = unprivileged_user("postgres", "nobody") if is_root() else None
        if owner is not None:
            self.os_user = owner.pw_name
            self._run_kwargs = {
                "user": owner.pw_uid,
                "group": owner.pw_gid,
                "extra_groups": [],
            }
        else:
            import getpass

            self.os_user = getpass.getuser()
        self.tmpdir = make_tempdir("dsrflow-pg-", owner)
        try:
            self.data_dir = self.tmpdir / "data"
            self.socket_dir = self.tmpdir
            self.log_path = self.tmpdir / "server.log"
            self._run(
                [
                    str(initdb),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                "initdb",
            )
            last_error: Exception | None = None
            for _attempt in range(3):
                self.port = free_port(self.host)
                self._write_conf()
                res = self._run(
                    [
                        str(pg_ctl),
                        "start",
                        "-w",
                        "-t",
                        str(self.start_timeout),
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_path),
                    ],
                    "pg_ctl start",
                    check=False,
                )
                if res.returncode == 0:
                    self._started = True
                    break
                log = log_tail(self.log_path)
                last_error = ServiceStartError(
                    f"pg_ctl start failed (exit {res.returncode}):\n"
                    f"{(res.stdout + res.stderr).strip()}\n--- server log ---\n{log}"
                )
                if "already in use" not in log:  # only retry on a lost port race
                    break
                time.sleep(0.2)
            if not self._started:
                assert last_error is not None
                raise last_error
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            if self._started and self.data_dir is not None:
                self._run(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "stop",
                        "-w",
                        "-t",
                        "30",
                        "-m",
                        "immediate",
                        "-D",
                        str(self.data_dir),
                    ],
                    "pg_ctl stop",
                    check=False,
                )
        finally:
            self._started = False
            remove_tree(self.tmpdir)
            self.tmpdir = None

    # ------------------------------------------------------------------ internals

    def _write_conf(self) -> None:
        assert self.data_dir is not None
        assert self.socket_dir is not None
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            **FAST_SETTINGS,
            **self.extra_settings,
        }
        lines = ["", "# --- dsrflow test settings ---"]
        lines += [f"{k} = {_quote_conf(v)}" for k, v in settings.items()]
        # postgresql.auto.conf is read last and is owned by the server user: write it as
        # a whole (later runs replace it) so retries with a new port are idempotent.
        auto = self.data_dir / "postgresql.auto.conf"
        auto.write_text("\n".join(lines) + "\n")
        if self._run_kwargs:
            os.chown(auto, self._run_kwargs["user"], self._run_kwargs["group"])

    def _run(
        self, cmd: list[str], what: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            cwd=str(self.tmpdir),
            env=env,
            stdin=subprocess.DEVNULL,
            **self._run_kwargs,
        )
        if check and res.returncode != 0:
            raise ServiceStartError(
                f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n"
                f"{(res.stdout + res.stderr).strip()}"
            )
        return res

    def __repr__(self) -> str:
        return f"<PostgresCluster {self.host}:{self.port} data={self.data_dir}>"
