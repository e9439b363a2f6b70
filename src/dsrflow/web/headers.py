"""Security headers per route, and the refusals that come before any route runs.

One ASGI middleware, so that every response (redirects, errors, 404s of unknown paths) carries
the headers of its kind of route; a header a route set itself is kept.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dsrflow.web.limits import Refusal, problem_refusal, send_refusal

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# Swagger UI and ReDoc, from local assets: inline styles, web workers from blob: (ReDoc).
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src blob:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
HSTS = "max-age=63072000; includeSubDomains"
DATA_PREFIXES = ("/api/", "/metrics", "/openapi.json", "/healthz")
DOCS_PREFIXES = ("/docs", "/redoc")
WRITES = {"POST", "PUT", "PATCH"}


def headers_for(path: str, *, https: bool) -> dict[str, str]:
    """The security headers a response to ``path`` carries (names in lower case)."""
    headers = {"x-content-type-options": "nosniff"}
    if https:
        headers["strict-transport-security"] = HSTS
    if path.startswith(DATA_PREFIXES):
        # Handler JSON carries names, addresses and request texts: never stored by a cache.
        headers["cache-control"] = "no-store"
    elif path.startswith(DOCS_PREFIXES):
        headers |= {
            "content-security-policy": DOCS_CSP,
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
        }
    else:
        # same-origin: no Referer (with a status or verify secret) ever leaves for another
        # site, and the pages' own form posts still carry an Origin to check.
        headers |= {
            "content-security-policy": PAGE_CSP,
            "referrer-policy": "same-origin",
            "cache-control": "no-store",
            "x-frame-options": "DENY",
        }
    return headers


def _has_nul(scope: Scope) -> bool:
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return any(b"%00" in part or b"\x00" in part for part in (raw, query)) or (
        "\x00" in scope["path"]
    )


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


class SecurityHeaders:
    """Adds ``headers_for(path)``; answers 400 to NUL in the path or query (no database stores
    it, and it must never reach a letter), 431 to headers over ``max_header_bytes``, and 415 to
    a JSON API write whose body is not JSON (a cross-site form cannot send JSON, so the API
    needs no CSRF token). A 5xx response closes the connection, so that a client's next call
    opens a fresh one."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        https: bool,
        max_header_bytes: int = 16 * 1024,
        refusal: Refusal | None = None,
    ):
        self.app, self.https, self.refusal = app, https, refusal or problem_refusal
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = headers_for(path, https=self.https)
        encoded = [(k.encode(), v.encode()) for k, v in extra.items()]
        if _has_nul(scope):
            await self._refuse(scope, send, 400, encoded)
            return
        # The server bounds headers while it reads them; this bounds what arrived in one piece.
        if sum(len(k) + len(v) for k, v in scope.get("headers", [])) > self.max_header_bytes:
            await self._refuse(scope, send, 431, encoded)
            return
        if path.startswith("/api/") and scope["method"] in WRITES:
            headers = dict(scope.get("headers", []))
            has_body = headers.get(b"content-length", b"0") != b"0" or (
                b"transfer-encoding" in headers
            )
            if has_body and not _is_json(headers.get(b"content-type", b"")):
                await self._refuse(scope, send, 415, encoded)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(k, v) for k, v in encoded if k not in present]
                if message["status"] >= 500 and b"connection" not in present:
                    added.append((b"connection", b"close"))
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(
        self, scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        content_type, body = self.refusal(scope, status, {})
        await send_refusal(send, status, content_type, body, tuple(headers))
