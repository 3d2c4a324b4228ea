"""Dependencies: one-line accessors for app state, and the optional bearer API key."""

from __future__ import annotations

import hashlib
import secrets

from fastapi import Request

from .errors import unauthorized
from .state import GatewayState


def gateway(request: Request) -> GatewayState:
    return request.app.state.gateway


def _digest(value: str) -> bytes:
    # Compare fixed-length digests so that the time taken does not depend on the key's length either.
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


async def require_api_key(request: Request) -> None:
    key = gateway(request).settings.api_key_value
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token_ok = secrets.compare_digest(_digest(token.strip()), _digest(key))
    if not (scheme.lower() == "bearer" and token_ok):
        raise unauthorized()
