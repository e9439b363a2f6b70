"""How uvicorn serves the app: bounded headers, proxies believed only when configured."""

from __future__ import annotations

from typing import Any

import uvicorn

from dsrflow.config import Settings


def uvicorn_config(app: Any, settings: Settings, *, host: str, port: int, **extra: Any) -> Any:
    """The uvicorn.Config for ``dsrflow serve`` (and the tests' live servers).

    The h11 parser, not httptools: h11 bounds the request line plus headers
    (``MAX_HEADER_BYTES``) and answers 400 past it, where httptools accepts any size.
    ``X-Forwarded-For`` is believed only from ``FORWARDED_ALLOW_IPS``; unset, the client is the
    connection's peer (uvicorn would otherwise believe any local client).
    """
    proxies = settings.forwarded_allow_ips
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or "",
        server_header=False,
        **extra,
    )
