"""``orthrus:*`` Prometheus series, beside SGLang's own ``sglang:spec_*`` ones.

Created in the worker (never at plugin import: SGLang configures prometheus_client's
multiprocess directory after plugins load) and fed from ``on_verify_complete_cpu``, which gets
the per-request accepted-draft counts already on the host: no extra GPU sync.
"""

from __future__ import annotations

import bisect

from ..block_policy import draft_counts, positions_from_counts


class OrthrusMetrics:
    def __init__(self, block_size: int, model_name: str):
        from prometheus_client import Counter, Histogram

        labels = {"model_name": model_name}
        self.block_size = block_size
        self.steps = Counter("orthrus:verify_steps_total", "ORTHRUS verify steps (one per request per step)",
                             labelnames=labels).labels(**labels)
        self.full_blocks = Counter("orthrus:full_block_accept_total",
                                   "Steps that accepted all B-1 drafts (every draft position)",
                                   labelnames=labels).labels(**labels)
        self.accept_drafts = Histogram("orthrus:accept_drafts", "Accepted drafts per step (tokens per step - 1)",
                                       labelnames=labels, buckets=[n + 0.5 for n in range(block_size)]
                                       ).labels(**labels)
        position = Counter("orthrus:accepted_position_total",
                           "Steps whose draft at this position (1-based) was accepted",
                           labelnames=[*labels, "position"])
        self.per_position = [position.labels(**labels, position=str(i + 1)) for i in range(block_size - 1)]
        reached = Counter("orthrus:reached_position_total",
                          "Steps that verified a draft at this position (1-based): the block had it and every "
                          "draft before it was accepted; accepted / reached is the position's acceptance rate",
                          labelnames=[*labels, "position"])
        self.reached_position = [reached.labels(**labels, position=str(i + 1)) for i in range(block_size - 1)]
        # ORTHRUS_BLOCK_POLICY=adaptive/cycle: how often each block size ran and what it accepted.
        self._by_block = Counter("orthrus:steps_by_block_size_total",
                                 "ORTHRUS verify steps (one per request per step) by the step's block size",
                                 labelnames=[*labels, "block_size"])
        self._tokens_by_block = Counter("orthrus:tokens_by_block_size_total",
                                        "Tokens committed (accepted drafts + bonus) by the step's block size",
                                        labelnames=[*labels, "block_size"])
        self._labels = labels
        self._block_series: dict[int, tuple] = {}  # block size -> its two labelled series

    @classmethod
    def create(cls, server_args, block_size: int, tp_rank: int | None = None) -> "OrthrusMetrics | None":
        """None without --enable-metrics, and on every TP rank but 0: all ranks run the same steps and write
        to one prometheus multiprocess directory, so counting on each would multiply the series by tp_size
        (SGLang's own scheduler series are likewise kept by attention-TP rank 0; DP attention is refused)."""
        if not getattr(server_args, "enable_metrics", False):
            return None
        if (tp_rank if tp_rank is not None else _tp_rank()) != 0:
            return None
        return cls(block_size, server_args.served_model_name or server_args.model_path)

    def observe(self, num_correct_drafts_per_req: list[int], block_size: int | None = None) -> None:
        """One step of block_size (default: the largest) over these requests.

        Counted on the host first, then one write per nonzero count: under --enable-metrics each write is a
        locked write into prometheus_client's shared files, on the scheduler's path between steps. Written
        one request at a time (Histogram.observe), the series cost 87 us a step at batch 32 and 150 at 64;
        counted first, 31 and 39 (2-core CI-class CPU, 2026-12-07)."""
        block_size = block_size or self.block_size
        drafts = block_size - 1
        counts = draft_counts(num_correct_drafts_per_req, drafts)
        requests = len(num_correct_drafts_per_req)
        accepted_total = sum(n * c for n, c in enumerate(counts))
        _observe_counts(self.accept_drafts, counts, accepted_total)
        self.steps.inc(requests)
        for i, (reached, accepted_here) in enumerate(positions_from_counts(counts)):
            self.reached_position[i].inc(reached)
            if accepted_here:
                self.per_position[i].inc(accepted_here)
        if counts[drafts]:
            self.full_blocks.inc(counts[drafts])
        by_block = self._block_series.get(block_size)
        if by_block is None:
            labels = {**self._labels, "block_size": str(block_size)}
            by_block = self._block_series[block_size] = (self._by_block.labels(**labels),
                                                         self._tokens_by_block.labels(**labels))
        by_block[0].inc(requests)
        by_block[1].inc(accepted_total + requests)


def _observe_counts(histogram, counts: list[int], total: float) -> None:
    """``counts[n]`` observations of value n at once: what Histogram.observe does n by n (its _sum and its
    per-bucket values, non-cumulative, in prometheus_client >= 0.4), one write per nonzero count."""
    buckets = getattr(histogram, "_buckets", None)
    if buckets is None or not hasattr(histogram, "_sum"):  # not the layout we know: the public API
        for n, c in enumerate(counts):
            for _ in range(c):
                histogram.observe(n)
        return
    histogram._sum.inc(total)
    bounds = histogram._upper_bounds
    for n, c in enumerate(counts):
        if c:
            buckets[bisect.bisect_left(bounds, n)].inc(c)


def _tp_rank() -> int:
    try:
        from .compat import tensor_parallel_rank

        return tensor_parallel_rank()
    except Exception:  # no TP group (a unit test, or before SGLang's distributed init): a single rank
        return 0
