"""Launching real SGLang engines on the CPU path, for tests/sgl (imported by the tests)."""

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


class ChildEngine:
    """An sglang.Engine in its own (spawned) process, with the generate/shutdown calls the tests use.

    For the plain-AR engine a test compares ORTHRUS with: SGLang 0.5.23's tokenizer manager reads the
    speculative settings from a process-wide context that the last engine started in the process
    sets, so a speculative and a plain engine cannot share one process (the spec one loses its
    meta_info, or the plain one crashes computing spec metrics). 0.5.17 keeps them per engine.
    """

    def __init__(self, model_path, **overrides):
        import multiprocessing

        require_sglang()
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        start = time.perf_counter()
        self._proc = ctx.Process(target=_serve_engine, args=(child, str(model_path), overrides))
        self._proc.start()
        self._call("ready")
        print(f"\n[sglang] child engine start {time.perf_counter() - start:.1f} s ({overrides or 'defaults'})")

    def _call(self, method, **kwargs):
        if method != "ready":
            self._conn.send((method, kwargs))
        if not self._conn.poll(600):
            raise SGLangLaunchFailed(f"the child engine did not answer {method!r} in 600 s")
        ok, value = self._conn.recv()
        if not ok:
            raise SGLangLaunchFailed(f"child engine {method!r}: {value}")
        return value

    def generate(self, **kwargs):
        return self._call("generate", **kwargs)

    def shutdown(self):
        if self._proc.is_alive():
            self._call("shutdown")
            self._proc.join(60)


def _serve_engine(conn, model_path, overrides):
    """The child side of ChildEngine: start the engine, then answer calls until shutdown."""
    try:
        engine = launch_engine(model_path, **overrides)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send((False, repr(exc)))
        return
    conn.send((True, None))
    while True:
        method, kwargs = conn.recv()
        try:
            result = engine.generate(**kwargs) if method == "generate" else engine.shutdown()
            conn.send((True, result))
        except BaseException as exc:  # noqa: BLE001
            conn.send((False, repr(exc)))
        if method == "shutdown":
            return
