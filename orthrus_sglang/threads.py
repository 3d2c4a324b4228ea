"""How many CPU threads torch uses for the embedded engine and `orthrus generate`.

torch's default (one thread per physical core) is right on an idle machine and terrible on a busy
one: on 2 cores shared with other processes, OpenMP threads that wait for each other took the demo
model from ~8 to 0.4-1.1 tokens/s (OMP_NUM_THREADS=1 restored it). So the default is half the CPUs
this process may run on, at most 8 (a 135M-8B model at batch <= 8 gains little beyond that).

Precedence: an explicit count (--threads, ORTHRUS_THREADS) > OMP_NUM_THREADS (then torch's own
reading of it stands) > that default.
"""

from __future__ import annotations

import os

ENV = "ORTHRUS_THREADS"
MAX_DEFAULT = 8


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(cpus: int | None = None) -> int:
    cpus = available_cpus() if cpus is None else cpus
    return max(1, min(MAX_DEFAULT, cpus // 2))


def resolve_threads(requested: int | None = None) -> int | None:
    """The thread count to set, or None to leave torch as OMP_NUM_THREADS configured it."""
    if requested is None and os.environ.get(ENV):
        try:
            requested = int(os.environ[ENV])
        except ValueError:
            raise ValueError(f"{ENV} must be a positive integer, got {os.environ[ENV]!r}") from None
    if requested is not None:
        if requested < 1:
            raise ValueError(f"the thread count must be >= 1, got {requested}")
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return default_threads()


def apply_threads(requested: int | None = None) -> int:
    """Set torch's intra-op thread count (see resolve_threads); returns the count in force."""
    import torch

    n = resolve_threads(requested)
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()
