"""Settings: secrets stay out of reprs, empty variables mean "not set", one mail domain."""

from __future__ import annotations

import pytest

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
