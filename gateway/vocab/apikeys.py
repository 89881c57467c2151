"""API key strings, pure: making one, hashing it, and finding it in a request's headers.

Keys look like `smr_` + 43 URL-safe characters (32 random bytes). Only their SHA-256 is stored;
lookups go by that hash and the stored hash is compared in constant time (`gateway.path.auth`).
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "smr_"


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a client sent: `X-API-Key`, else `Authorization: Bearer <key>`."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None
