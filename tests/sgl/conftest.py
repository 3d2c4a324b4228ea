"""tests/sgl: real SGLang (0.5.17, or 0.5.23: scripts/ci_sglang_newest.sh) on the CPU engine (torch_native attention).

SGLang must be installed (the README's test command runs scripts/install_sglang_cpu.sh): a missing
sglang FAILS these tests, unless ORTHRUS_SGLANG_TESTS_OPTIONAL=1 says this machine has none.
"""

from __future__ import annotations

import os

import pytest
from sgl_engine import OPTIONAL_ENV, ChildEngine, launch_engine, sglang


def pytest_collection_modifyitems(config, items):
    if sglang is None and os.environ.get(OPTIONAL_ENV, "") not in ("", "0"):
        skip = pytest.mark.skip(reason=f"sglang not importable and {OPTIONAL_ENV} is set")
        for item in items:
            if "tests/sgl/" in str(item.fspath).replace(os.sep, "/"):
                item.add_marker(skip)


@pytest.fixture(scope="module")
def engine_factory():
    """Engines started through this are shut down at the end of the module."""
    engines = []

    def start(model_path, *, own_process=False, **overrides):
        """own_process: a plain (non-speculative) engine beside ORTHRUS ones (sgl_engine.ChildEngine)."""
        engines.append((ChildEngine if own_process else launch_engine)(model_path, **overrides))
        return engines[-1]

    yield start
    # Child engines first: an in-process Engine.shutdown() kills every descendant of this process
    # (kill_process_tree(getpid(), include_parent=False)), a spawned child engine included, which
    # would then die mid-call and orphan its own scheduler.
    for engine in sorted(engines, key=lambda engine: not isinstance(engine, ChildEngine)):
        engine.shutdown()
