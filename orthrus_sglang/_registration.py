"""Register the "orthrus" config with transformers when transformers is imported, not before.

`import orthrus_sglang` must stay cheap (the `orthrus` CLI prints its help without loading torch
or transformers), yet keep its promise that `AutoConfig.from_pretrained` reads Orthrus
checkpoints afterwards. So: if transformers is already loaded, register now; otherwise a one-shot
import hook registers right after transformers' own module has run.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys


def register_when_transformers_loads() -> None:
    if "transformers" in sys.modules:
        _register()
    elif not any(isinstance(finder, _TransformersHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TransformersHook())


def _register() -> None:
    # orthrus_sglang.config registers itself when it has loaded. Already in sys.modules means
    # loaded, or loading right now (it imports transformers itself): either way nothing to do.
    if f"{__package__}.config" not in sys.modules:
        importlib.import_module(".config", __package__)


class _TransformersHook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)  # one shot; the real finders locate the package
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfterExec(spec.loader)
        return spec


class _RegisterAfterExec(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the real loader's
        return getattr(self._loader, name)
