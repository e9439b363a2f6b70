"""How uvicorn serves the app: bounded headers, proxies believed only when configured."""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dsrflow.config import Settings


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol (the C parser, the faster of uvicorn's two), bounding the
    request line plus headers as its h11 protocol does: a head still incomplete after more than
    ``h11_max_incomplete_event_size`` bytes is answered 400 and the connection closed. httptools
    itself keeps whatever it is sent until a header ends. A head that arrives whole but too large
    is the app's 431 (``web.headers.SecurityHeaders``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_limit: int = self.config.h11_max_incomplete_event_size or 16 * 1024
        self.head_bytes = 0
        self.head_done = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.head_done or self.transport.is_closing():
            return
        # Every byte of this piece may not be the head's (the end of an earlier pipelined
        # message can share it), so a pipelining client is bounded a little early, never late.
        self.head_bytes += len(data)
        if self.head_bytes > self.head_limit:
            self.send_400_response("Request line and headers too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes, self.head_done = 0, False

    def on_headers_complete(self) -> None:
        self.head_done = True
        super().on_headers_complete()


def uvicorn_config(app: Any, settings: Settings, *, host: str, port: int, **extra: Any) -> Any:
    """The uvicorn.Config for ``dsrflow serve`` (and the tests' live servers)."""
    return uvicorn.Config(app, **uvicorn_options(settings, host=host, port=port, **extra))


def uvicorn_options(settings: Settings, *, host: str, port: int, **extra: Any) -> dict[str, Any]:
    """uvicorn's options for ``dsrflow serve``, one process or ``--workers N``.

    ``BoundedHttpTools`` reads at most ``MAX_HEADER_BYTES`` of request line and headers.
    ``X-Forwarded-For`` is believed only from ``FORWARDED_ALLOW_IPS``; unset, the client is the
    connection's peer (uvicorn would otherwise believe any local client).
    """
    proxies = settings.forwarded_allow_ips
    return dict(
        host=host,
        port=port,
        http=f"{__name__}:BoundedHttpTools",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or "",
        server_header=False,
        **extra,
    )
