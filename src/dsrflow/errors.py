"""The one error hierarchy: what services, repositories and the engine raise.

Each class carries its HTTP status and its RFC 9457 problem type, so that the app maps every
one of them in one handler (``dsrflow.api.problems``) and a new route gets the right problem
document for free. The CLI and the pages catch the same classes. ``extensions`` become extra
members of the problem document (for a conflict: the request's state and version now).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, ClassVar

PROBLEM_BASE = "/problems/"


class DsrflowError(Exception):
    """Base of every error a caller is meant to see; never raised itself."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"

    def __init__(
        self, detail: str, *, headers: dict[str, str] | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extensions = extensions

    @property
    def title(self) -> str:
        return HTTPStatus(self.status).phrase

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class Unauthorized(DsrflowError):
    """No credentials, or credentials that name no one (a missing or revoked token)."""

    status = 401
    slug = "unauthorized"


class Forbidden(DsrflowError):
    """The caller is known, but may not do this (a role without the right, a cross-site post)."""

    status = 403
    slug = "forbidden"


class NotFound(DsrflowError):
    """The thing named does not exist (or is not the caller's to see)."""

    status = 404
    slug = "not-found"


class Conflict(DsrflowError):
    """The thing moved on: a stale version, a trigger not allowed in the state it is in now,
    a message already decided. Extensions say what it is now."""

    status = 409
    slug = "conflict"


class TriggerNotAllowed(Conflict):
    """The trigger does not exist, or cannot fire from the current state."""

    slug = "trigger-not-allowed"

    def __init__(self, trigger: str, state: str, allowed: list[str]) -> None:
        super().__init__(
            f"'{trigger}' is not allowed in state '{state}'", state=state, allowed_triggers=allowed
        )
        self.trigger, self.state, self.allowed = trigger, state, allowed


class Gone(DsrflowError):
    """It existed, but is no longer available (an expired link)."""

    status = 410
    slug = "gone"


class PayloadTooLarge(DsrflowError):
    status = 413
    slug = "payload-too-large"


class Invalid(DsrflowError):
    """Input that is incomplete or names something the workflows do not allow.

    ``errors`` maps each field (dotted path) to what is wrong with it.
    """

    status = 422
    slug = "invalid"

    def __init__(self, errors: dict[str, str], *, detail: str | None = None) -> None:
        super().__init__(detail or "; ".join(f"{k}: {v}" for k, v in errors.items()), errors=errors)
        self.errors = errors


class TooManyRequests(DsrflowError):
    status = 429
    slug = "too-many-requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Too many requests; try again later.", headers={"Retry-After": str(retry_after)}
        )
        self.retry_after = retry_after


class Unavailable(DsrflowError):
    """A part the service needs is down for now (database, mail server); worth a retry."""

    status = 503
    slug = "unavailable"
