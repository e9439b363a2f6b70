"""Cross-site request forgery: a signed token bound to something the attacker cannot read,
plus an ``Origin``/``Referer`` check against ``BASE_URL``.

    csrf = Csrf(rt.secret_key, rt.settings.base_url)
    token = csrf.token_for(binding)               # put in a hidden field named csrf_token
    if not csrf.accepts(request, binding, form.get("csrf_token")): ...answer 403

``binding`` is what the token is tied to: the console's session id, or for the cookie-less
requester pages the value of a small random cookie (``browser_binding``/``remember_browser``).
A token is valid for ``max_age_seconds`` (default one day).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

FIELD = "csrf_token"
COOKIE = "dsrflow_browser"


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.hostname}{port}".lower()


class Csrf:
    def __init__(
        self,
        secret: bytes,
        base_url: str,
        *,
        max_age_seconds: int = 86_400,
        clock: Callable[[], float] = time.time,
    ):
        self.secret, self.max_age, self.clock = secret, max_age_seconds, clock
        self.origin = origin_of(base_url)
        self.secure = base_url.lower().startswith("https://")

    def token_for(self, binding: str) -> str:
        issued = str(int(self.clock()))
        return f"{issued}.{self._mac(binding, issued)}"

    def valid_token(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token or "." not in token:
            return False
        issued, _, mac = token.partition(".")
        if not issued.isdigit() or self.clock() - int(issued) > self.max_age:
            return False
        return hmac.compare_digest(mac, self._mac(binding, issued))

    def same_origin(self, headers: Mapping[str, str]) -> bool:
        """False when the browser says the request comes from elsewhere: ``Sec-Fetch-Site``
        other than same-origin, or an ``Origin`` (else ``Referer``) not of ``BASE_URL``'s
        origin. ``Origin: null`` (sent under a no-referrer policy) passes only with
        ``Sec-Fetch-Site: same-origin``. A request with none of these headers passes here
        (the token still has to match)."""
        site = headers.get("sec-fetch-site", "").lower()
        if site and site not in ("same-origin", "none"):
            return False
        origin = headers.get("origin")
        if origin is not None:
            return origin.lower() == self.origin or (origin == "null" and site == "same-origin")
        referer = headers.get("referer")
        if referer is not None:
            return origin_of(referer) == self.origin
        return True

    def accepts(self, request: Request, binding: str | None, token: str | None) -> bool:
        """Both checks, for a form POST."""
        return self.same_origin(request.headers) and self.valid_token(binding, token)

    def _mac(self, binding: str, issued: str) -> str:
        message = f"csrf|{binding}|{issued}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def browser_binding(request: Request) -> tuple[str, bool]:
    """The requester's browser's random id from its cookie, or a new one (and True: the
    response must ``remember_browser``). The cookie holds no personal data."""
    value = request.cookies.get(COOKIE, "")
    if len(value) == 43 and value.replace("-", "").replace("_", "").isalnum():
        return value, False
    return secrets.token_urlsafe(32), True


def remember_browser(response: Response, binding: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE, binding, max_age=86_400, httponly=True, samesite="lax", secure=secure, path="/"
    )
