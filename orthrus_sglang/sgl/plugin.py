"""Entry point of SGLang's plugin group (pyproject.toml): SGLang calls ``register()`` in every process.

It runs before SGLang builds its server arguments, so the ``orthrus`` config must be known to
transformers by then. Nothing here imports prometheus_client (SGLang sets up its
multiprocess directory later); metrics are created inside the worker.
"""

from __future__ import annotations

ALGORITHM = "ORTHRUS"
MODEL_PACKAGE = "orthrus_sglang.sgl.models"


def register() -> None:
    from orthrus_sglang.config import register_with_transformers

    register_with_transformers()
    _register_algorithm()
    _register_model()
    from .hooks import register_hooks

    register_hooks()  # applied by SGLang's load_plugins() right after this returns


def _register_algorithm() -> None:
    from . import compat
    from .spec import OrthrusSpecAlgo, validate_orthrus_server_args

    if compat.registered_algorithm(ALGORITHM) is not None:
        return  # load_plugins ran before in this process

    @compat.SpeculativeAlgorithm.register(ALGORITHM, supports_overlap=True, spec_class=OrthrusSpecAlgo,
                                   validate_server_args=validate_orthrus_server_args)
    def _worker_factory(server_args):
        from .worker import OrthrusWorker

        return OrthrusWorker


def _register_model() -> None:
    from .compat import ModelRegistry

    if "OrthrusLM" not in ModelRegistry.get_supported_archs():
        ModelRegistry.register(MODEL_PACKAGE, strict=True)
