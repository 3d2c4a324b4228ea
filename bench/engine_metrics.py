"""--enable-metrics for the in-process sglang.Engine the benches start, as the README's serve command has it.

The scheduler process writes its series (SGLang's and our orthrus:*) into prometheus_client's
multiprocess files, one directory per engine; reading them back here gives the block sizes an
adaptive ORTHRUS ran, from the engine's own counters. Two things make an in-process Engine differ
from a server: prometheus_client picks its value class at import, so it is imported here before the
directory's variable is set (this process, SGLang's tokenizer manager, keeps its series in memory;
the spawned scheduler writes files); and SGLang registers its sglang:* series once per Engine in the
default registry, so a new engine's start unregisters the last one's, or the next mode's would collide.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

STEPS_BY_BLOCK_SIZE = "orthrus:steps_by_block_size_total"  # sgl/metrics.py


class EngineMetrics:
    def __init__(self, root: Path | str):
        import prometheus_client  # noqa: F401  (before PROMETHEUS_MULTIPROC_DIR is ever set here: see above)

        _forget_sglang_series()  # an earlier engine's (closed, or failed to start): the new one registers its own
        self.dir = tempfile.mkdtemp(prefix="metrics-", dir=root)

    @property
    def env(self) -> dict[str, str]:
        """For scheduler_env around the engine's start: its processes keep the directory, this one does not."""
        return {"PROMETHEUS_MULTIPROC_DIR": self.dir}

    engine_flags = {"enable_metrics": True}

    def block_sizes(self) -> dict[int, int] | None:
        """Request-steps per block size so far (cumulative), as /metrics would serve them; None before the
        first ORTHRUS step (and always for AR and DFLASH)."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.dir)
        steps = {int(s.labels["block_size"]): int(s.value) for metric in registry.collect() for s in metric.samples
                 if s.name == STEPS_BY_BLOCK_SIZE}
        return steps or None


def _forget_sglang_series() -> None:
    """Unregister the sglang:* series an earlier Engine put in this process's default registry (prometheus_client
    lists collectors only in a private map; unregister() is public)."""
    from prometheus_client import REGISTRY

    for collector, names in list(getattr(REGISTRY, "_collector_to_names", {}).items()):
        if any(name.startswith("sglang:") for name in names):
            REGISTRY.unregister(collector)


def steps_between(before: dict[int, int] | None, after: dict[int, int] | None) -> dict[str, int]:
    """The request-steps per block size a run added (block_sizes() before and after it), largest B first."""
    if after is None:
        return {}
    before = before or {}
    return {str(b): n - before.get(b, 0) for b, n in sorted(after.items(), reverse=True) if n - before.get(b, 0)}


def block_mix(steps: dict[str, int]) -> str:
    """"B=16: 80%, B=4: 15%, B=1: 5%": each block size's share of the request-steps, largest B first."""
    total = sum(steps.values())
    return ", ".join(f"B={b}: {n / total:.0%}" for b, n in sorted(steps.items(), key=lambda kv: -int(kv[0]))) if total else ""
