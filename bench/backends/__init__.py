"""Benchmark backends, imported lazily: the embedded one needs no SGLang, the SGLang one no CPU model."""

from __future__ import annotations

BACKENDS = ("embedded", "sglang")


def get_backend(name: str, args):
    """A ``bench.record.Backend`` built from the parsed bench/throughput.py arguments."""
    if name == "embedded":
        from .embedded import EmbeddedBackend

        return EmbeddedBackend(args)
    if name == "sglang":
        from .sglang import SGLangBackend

        return SGLangBackend(args)
    raise ValueError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
