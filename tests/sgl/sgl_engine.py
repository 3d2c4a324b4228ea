"""Launching real SGLang 0.5.17 engines on the CPU path, for tests/sgl (imported by the tests)."""

from __future__ import annotations

import os
import time

import pytest

# SGLang's is_cpu() reads this once, at import, in this process and in its spawned children.
os.environ["SGLANG_USE_CPU_ENGINE"] = "1"

OPTIONAL_ENV = "ORTHRUS_SGLANG_TESTS_OPTIONAL"
try:
    import sglang
    SGLANG_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the environment
    sglang = None
    SGLANG_IMPORT_ERROR = exc

CPU_ENGINE_ARGS = dict(device="cpu", attention_backend="torch_native", disable_cuda_graph=True, dtype="float32",
                       mem_fraction_static=0.05, max_total_tokens=8192, context_length=512, random_seed=0,
                       log_level="error")
class SGLangLaunchFailed(RuntimeError):
    pass


def raise_on_sigquit(signum, frame):
    # SGLang's children SIGQUIT the launching process when they fail, and the default handler kills
    # the whole tree, pytest included. Module-level: it is pickled into the spawned scheduler.
    raise SGLangLaunchFailed("an SGLang child process failed (SIGQUIT); see the log above")


def require_sglang():
    if sglang is None:
        pytest.fail(f"sglang is not importable ({SGLANG_IMPORT_ERROR!r}). Install it with "
                    f"`bash scripts/install_sglang_cpu.sh`, or set {OPTIONAL_ENV}=1 to skip SGLang tests.")


def launch_engine(model_path, **overrides):
    """A real sglang.Engine on the CPU path; the caller shuts it down."""
    require_sglang()
    args = {**CPU_ENGINE_ARGS, "model_path": str(model_path), "custom_sigquit_handler": raise_on_sigquit, **overrides}
    start = time.perf_counter()
    engine = sglang.Engine(**args)
    print(f"\n[sglang] engine start {time.perf_counter() - start:.1f} s ({overrides or 'defaults'})")
    return engine
