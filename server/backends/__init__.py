"""Backends behind one interface (base.Backend): the embedded engine, or a SGLang server."""

from __future__ import annotations

from ..settings import GatewaySettings
from .base import Backend


def make_backend(settings: GatewaySettings) -> Backend:
    if settings.backend == "sglang":
        from .sglang import SGLangBackend

        return SGLangBackend(settings)
    from .embedded import EmbeddedBackend

    return EmbeddedBackend(settings)
