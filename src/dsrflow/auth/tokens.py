"""Secrets: long random tokens handed out once and stored only as SHA-256 digests.

The tokens carry 256 bits of randomness, so a fast hash is enough: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import secrets

ROLES = ("admin", "handler", "auditor")
# What each role may do on the handler API.
PERMISSIONS = {
    "admin": {"read", "transition", "audit", "manage"},
    "handler": {"read", "transition"},
    "auditor": {"read", "audit"},
}


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def may(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, set())
