"""Settings: secrets stay out of reprs, empty variables mean "not set", one mail domain."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsrflow import locations
from dsrflow.config import Settings


def _settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_passwords_never_show_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSRFLOW_SMTP_PASSWORD", "smtp-s3cret")
    monkeypatch.setenv("DSRFLOW_IMAP_PASSWORD", "imap-s3cret")
    settings = _settings()
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "smtp-s3cret"
    assert settings.imap_password is not None
    assert settings.imap_password.get_secret_value() == "imap-s3cret"


def test_an_empty_variable_means_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSRFLOW_ESCALATION_EMAIL", "")
    monkeypatch.setenv("DSRFLOW_SMTP_PORT", "")
    settings = _settings()
    assert settings.escalation_email is None
    assert settings.smtp_port is None


@pytest.mark.parametrize(
    ("mail_from", "base_url", "domain"),
    [
        ("info@innovativeai.co.jp", "https://dsr.example.com", "innovativeai.co.jp"),
        ("desk@privacy.example.jp", "http://127.0.0.1:8000", "privacy.example.jp"),
    ],
)
def test_one_mail_domain(
    monkeypatch: pytest.MonkeyPatch, mail_from: str, base_url: str, domain: str
) -> None:
    monkeypatch.setenv("DSRFLOW_MAIL_FROM", mail_from)
    monkeypatch.setenv("DSRFLOW_BASE_URL", base_url)
    assert _settings().mail_domain == domain


def test_the_secret_key_never_shows_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSRFLOW_SECRET_KEY", "csrf-s3cret")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert "csrf-s3cret" not in repr(settings)
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "csrf-s3cret"


@pytest.mark.parametrize(
    ("environment", "dotenv"),
    [
        ({}, None),
        ({}, "DSRFLOW_DATA_DIR=/srv/dsr/var\n"),
        ({}, "# comment\nexport DSRFLOW_DATA_DIR='/srv/quoted dir'  # note\n"),
        ({}, 'DSRFLOW_DATA_DIR="/srv/double"\nOTHER=1\n'),
        ({}, "DSRFLOW_DATA_DIR=/srv/bare # a comment\n"),
        ({}, "DSRFLOW_DATA_DIR=/first\nDSRFLOW_DATA_DIR=/last\n"),
        ({}, "dsrflow_data_dir=relative/var\n"),
        ({}, "DSRFLOW_DATA_DIR=\n"),
        ({"DSRFLOW_DATA_DIR": "/from/env"}, "DSRFLOW_DATA_DIR=/from/dotenv\n"),
        ({"DSRFLOW_DATA_DIR": ""}, "DSRFLOW_DATA_DIR=/from/dotenv\n"),
        ({"dsrflow_data_dir": "/lower/env"}, None),
    ],
)
def test_data_dir_is_found_without_pydantic_as_settings_find_it(
    environment: dict[str, str],
    dotenv: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `dsrflow ingest-email` looks for the service's socket in DATA_DIR before it imports
    # pydantic: it must find the directory the service uses.
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.lower() == "dsrflow_data_dir"]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv, encoding="utf-8")
    assert locations.data_dir() == Settings().data_dir
    assert locations.intake_socket(locations.data_dir()) == Settings().intake_socket_path
