"""Settings: every knob in one place, read once from the environment (prefix DSRFLOW_) and .env."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import EmailStr, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dsrflow.locations import DEFAULT_DATA_DIR, ENV_FILE, ENV_PREFIX, intake_socket
from dsrflow.workflow.calendar import DEFAULT_CLOSURE_DAYS, DEFAULT_TIMEZONE, parse_closures

Security = Literal["none", "starttls", "tls"]


class Settings(BaseSettings):
    # An empty variable (DSRFLOW_ESCALATION_EMAIL=) means "not set", not an invalid value.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=ENV_FILE, extra="ignore", env_ignore_empty=True
    )

    # Also read without pydantic by `dsrflow ingest-email` (dsrflow.locations.data_dir).
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    workflows_dir: Path = Path("./workflows")
    base_url: str = "http://127.0.0.1:8000"
    timezone: str = DEFAULT_TIMEZONE

    handler_email: EmailStr = "info@innovativeai.co.jp"
    escalation_email: EmailStr | None = None
    mail_from: EmailStr = "info@innovativeai.co.jp"
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Security = "none"
    smtp_timeout_seconds: float = 30.0
    smtp_validate_certs: bool = True

    imap_host: str | None = None
    imap_port: int | None = None
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = "INBOX"
    imap_security: Security = "tls"

    # Signs CSRF tokens and receipt links. Unset: a random key kept in DATA_DIR/secret_key
    # (set it explicitly when several hosts serve the pages and do not share DATA_DIR).
    secret_key: SecretStr | None = None

    # Public endpoints: size caps and per-client request budgets.
    max_body_bytes: int = 64 * 1024
    # The request form (20,000 Japanese characters URL-encode to 180,000 bytes).
    max_form_bytes: int = 256 * 1024
    # Identity and authority documents uploaded from the status page.
    max_upload_bytes: int = 5 * 1024 * 1024
    max_documents_per_request: int = 10
    # Request line plus headers, in bytes (web.server.BoundedHttpTools; larger gets 400).
    max_header_bytes: int = 16 * 1024
    # Budget per client and minute, for every bucket (intake, verify, status, upload,
    # console_login, ...) unless RATE_LIMITS names the bucket: {"status": 60}.
    rate_limit_per_minute: int = 20
    rate_limits: dict[str, int] = Field(default_factory=dict)
    # Clients remembered by the limiter at most; the least recently seen are forgotten first.
    rate_limit_max_clients: int = 10_000
    # Proxies whose X-Forwarded-For is believed (comma-separated IPs or CIDRs, "*" for any).
    # Unset: the client address is the connection's, whatever the headers say.
    forwarded_allow_ips: str | None = None
    # The status link works while the request is open and for this long after it closes.
    status_link_days_after_close: int = 90
    # The same type, address and details from the form within this time is the same request.
    duplicate_window_hours: int = 24
    # Business-day closures, as MM-DD ranges (the default is the year-end closure 12/29-1/3).
    closure_days: list[str] = Field(default_factory=lambda: list(DEFAULT_CLOSURE_DAYS))
    verification_link_hours: int = 72
    # A console sign-in lasts this long (it also ends on logout or when the token is revoked).
    console_session_hours: int = 12

    # Disclosure packages: files stored under PACKAGES_DIR (default DATA_DIR/packages), offered
    # on the status page for PACKAGE_EXPIRY_DAYS, each file at most PACKAGE_MAX_DOWNLOADS times.
    packages_dir: Path | None = None
    package_expiry_days: int = Field(default=14, ge=1, le=365)
    package_max_downloads: int = Field(default=5, ge=1, le=1000)
    package_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1)  # all files of a package
    package_max_files: int = Field(default=20, ge=1, le=1000)

    # The desk hears of every requester event (reply, verification, withdrawal, upload):
    # one mail per event ("each"), or one mail per REQUESTER_EVENT_BATCH_MINUTES ("batch").
    requester_event_mail: Literal["each", "batch"] = "each"
    requester_event_batch_minutes: int = Field(default=60, ge=1, le=24 * 60)
    # Threads that run the API's blocking work (database calls) at once, per `serve` process;
    # unset, what measured best for the database (``api_threads_for``, docs/deploy.md).
    api_threads: int | None = Field(default=None, ge=1, le=1000)
    # `dsrflow serve` logs one line per HTTP call when true (off: it costs more than a create).
    access_log: bool = False
    # How often the scheduler sweeps deadlines and sends the outbox.
    sweep_interval_seconds: int = Field(default=60, ge=1)
    outbox_interval_seconds: int = Field(default=15, ge=1)

    # SQLite durability: FULL syncs the WAL at each commit, so an acknowledged write survives a
    # power cut; NORMAL is faster but may lose the last commits then (docs/reliability.md).
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"

    # Retention (dsrflow purge, also run daily by the scheduler); see docs/reliability.md.
    retention_closed_days: int = Field(default=3 * 365, ge=1)
    retention_raw_mail_days: int = Field(default=90, ge=1)
    retention_id_documents_days: int = Field(default=30, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}' (e.g. Asia/Tokyo)") from exc
        return value

    @field_validator("closure_days")
    @classmethod
    def _valid_closures(cls, value: list[str]) -> list[str]:
        parse_closures(value)
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dsrflow.sqlite3').resolve()}"

    def api_threads_for(self, dialect: str) -> int:
        """``API_THREADS``, or by default 4 on PostgreSQL, whose round trips are short, so that
        more threads only contend for the interpreter lock; and 40 (anyio's own default) on
        SQLite, whose commits wait on the disk."""
        if self.api_threads is not None:
            return self.api_threads
        return 4 if dialect == "postgresql" else 40

    @property
    def resolved_packages_dir(self) -> Path:
        return self.packages_dir or self.data_dir / "packages"

    @property
    def mail_domain(self) -> str:
        """The domain of our own Message-IDs: MAIL_FROM's, else BASE_URL's host."""
        return (
            str(self.mail_from).rpartition("@")[2]
            or urlsplit(self.base_url).hostname
            or "localhost"
        )

    @property
    def maildir_path(self) -> Path:
        return self.data_dir / "maildir"

    @property
    def intake_socket_path(self) -> Path:
        return intake_socket(self.data_dir)


@lru_cache
def get_settings() -> Settings:
    return Settings()
