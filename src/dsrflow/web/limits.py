"""Limits on public endpoints: a body-size cap (ASGI middleware) and per-client rate limits."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int | Callable[[Scope], int],
        refusal: Refusal | None = None,
    ):
        self.app, self.refusal = app, refusal or problem_refusal
        self.limit_for = max_bytes if callable(max_bytes) else (lambda _: max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
                await self._refuse(scope, send, max_bytes)
                return
        seen = 0
        too_large = started = False

        async def limited_receive() -> Message:
            # Past the limit the app is told the client left; whatever it answers to that is
            # replaced by our 413 (a JSON route would otherwise call it a parse error).
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._refuse(scope, send, max_bytes)

    async def _refuse(self, scope: Scope, send: Send, max_bytes: int) -> None:
        await send_refusal(send, 413, *self.refusal(scope, 413, {"max_bytes": max_bytes}))


# What a refusal from a middleware says: (status, {detail values}) -> (content type, body).
Refusal = Callable[[Scope, int, dict[str, Any]], tuple[str, bytes]]
DETAILS = {
    400: "The request line or a query value is malformed (NUL characters are refused).",
    413: "The request body is larger than {max_bytes} bytes.",
    415: "This endpoint takes application/json bodies only.",
    431: "The request headers are too large.",
}


def problem_refusal(scope: Scope, status: int, values: dict[str, Any]) -> tuple[str, bytes]:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": DETAILS[status].format(**values),
    }
    return "application/problem+json", json.dumps(body).encode()


async def send_refusal(
    send: Send,
    status: int,
    content_type: str,
    body: bytes,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A sliding window per (bucket, client), in memory of this process (each API process has
    its own: put a shared limiter in the reverse proxy when running several).

    ``per_minute`` is every bucket's budget unless ``buckets`` names it. At most
    ``max_clients`` (bucket, client) pairs are remembered; the least recently seen are forgotten
    first, so a flood of distinct clients costs bounded memory and O(1) per call.

        wait = limiter.retry_after("console_login", client_address(request))
        if wait is not None: ...answer 429 with Retry-After: wait
    """

    def __init__(
        self,
        per_minute: int,
        *,
        buckets: dict[str, int] | None = None,
        max_clients: int = 10_000,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.per_minute, self.buckets = per_minute, dict(buckets or {})
        self.max_clients, self.window, self.clock = max_clients, window_seconds, clock
        self._hits: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._hits)

    def clear(self) -> None:
        """Forget every client (tests; a restart does the same)."""
        with self._lock:
            self._hits.clear()

    def limit(self, bucket: str) -> int:
        return self.buckets.get(bucket, self.per_minute)

    def retry_after(self, bucket: str, client: str) -> int | None:
        """Record a hit; return None if allowed, else the seconds to wait."""
        now, limit = self.clock(), self.limit(bucket)
        with self._lock:
            key = (bucket, client)
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
                while len(self._hits) > self.max_clients:
                    self._hits.popitem(last=False)
            else:
                self._hits.move_to_end(key)
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= limit:
                return max(1, int(self.window - (now - hits[0])) + 1)
            hits.append(now)
            return None
