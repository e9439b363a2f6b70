"""Signed receipt links for a repeated submission: ``/received/{receipt}`` names the earlier
request without its status secret, for a day."""

from __future__ import annotations

import hashlib
import hmac
import time

MAX_AGE_SECONDS = 86_400


def sign(secret: bytes, request_id: str, now: float | None = None) -> str:
    issued = str(int(now if now is not None else time.time()))
    return f"{request_id}.{issued}.{_mac(secret, request_id, issued)}"


def verify(secret: bytes, receipt: str, now: float | None = None) -> str | None:
    """The request id, or None for a forged, malformed or expired receipt."""
    parts = receipt.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    request_id, issued, mac = parts
    if (now if now is not None else time.time()) - int(issued) > MAX_AGE_SECONDS:
        return None
    return request_id if hmac.compare_digest(mac, _mac(secret, request_id, issued)) else None


def _mac(secret: bytes, request_id: str, issued: str) -> str:
    return hmac.new(secret, f"receipt|{request_id}|{issued}".encode(), hashlib.sha256).hexdigest()
