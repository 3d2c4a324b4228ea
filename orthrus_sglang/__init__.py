"""orthrus-sglang: Orthrus (lossless multi-token decoding with a diffusion view) for SGLang.

Importing this package never imports sglang, torch or transformers (the names below load on
first use); it registers the "orthrus" config with transformers as soon as transformers is
imported, so ``AutoConfig.from_pretrained`` reads Orthrus checkpoints.
"""

from __future__ import annotations

import importlib

from ._registration import register_when_transformers_loads

__all__ = ["ConfigError", "DecodeStats", "OrthrusConfig", "SamplingParams"]
__version__ = "0.1.0"

_LAZY = {"ConfigError": "config", "OrthrusConfig": "config", "register_with_transformers": "config",
         "SamplingParams": "sampling", "DecodeStats": "stats"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_when_transformers_loads()
