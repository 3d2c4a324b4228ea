"""Sampled acceptance replayed from CUDA graphs (ORTHRUS_ACCEPT_GRAPHS=1; issue 18).

A sampled request's acceptance (step.accept: filtered p at the drafts, keyed uniforms, the count,
the residual and the bonus draw) is about 350 small PyTorch ops, run eagerly after the step's
graph: at concurrency 1 on the demo model that is about one AR step of launches. Its inputs all
have fixed shapes and sit at fixed addresses once the step's forward replays a graph: the verify
logits are the graph's output buffer for this batch size, the drafts and q the worker's step
buffers. So the acceptance is captured once per (batch size, block size, candidate bound, input
addresses) into its own graph and replayed: one launch, the same kernels, the same tokens (the
graph runs the eager code; tests/gpu (g) holds both equal and the chi-square).

Eager, named: a step whose forward ran eagerly (its logits move every step), a CPU, and keys past
MAX_GRAPHS. Greedy-only batches never get here (the worker's prefix match is three ops). Grammar
masks and logit_bias are applied in place to the logits buffer before the replay, so a graph sees
them. Per-step host work: seven small device copies (the rows' parameters and start positions).
"""

from __future__ import annotations

import logging

import torch

from .. import step
from ..accept import DraftDist, RowSampling
from .options import accept_graphs

logger = logging.getLogger(__name__)

# Keys are few in practice (batch sizes x block sizes x candidate bounds); past this, eager.
MAX_GRAPHS = 256
# Input addresses one shape may show: the step's graph output for a batch size stays put, so more
# means the logits move (a runner that copies its output) and capturing would never pay off.
MAX_ADDRESSES_PER_SHAPE = 2


# RowSampling's per-request tensors: the graph reads static copies, refilled every step.
_ROW_TENSORS = ("greedy", "temperature", "top_k", "top_p", "min_p", "seeds")


class _Captured:
    """One graph and the static tensors it reads (parameters copied in per step) and writes."""

    def __init__(self, rows: RowSampling, start: torch.Tensor):
        self.rows = RowSampling(**{name: getattr(rows, name).clone() for name in _ROW_TENSORS}, bound=rows.bound)
        self.start = start.to(torch.int64).clone()
        self.graph = torch.cuda.CUDAGraph()
        self.num_accepted = self.bonus = None

    def load(self, rows: RowSampling, start: torch.Tensor) -> None:
        for name in _ROW_TENSORS:
            getattr(self.rows, name).copy_(getattr(rows, name), non_blocking=True)
        self.start.copy_(start, non_blocking=True)


class AcceptGraphs:
    """step.accept for sampled batches, from a CUDA graph where its inputs have fixed addresses."""

    def __init__(self, device, enabled: bool | None = None):
        device = torch.device(device)
        self.enabled = (accept_graphs() if enabled is None else enabled) and device.type == "cuda"
        self._graphs: dict[tuple, _Captured] = {}
        self._addresses: dict[tuple, int] = {}  # shape key -> distinct input addresses captured for it
        self._pool = None
        self._full_warned = False
        self.replays = 0  # steps that replayed a graph (tests, logs)

    def accept(self, drafts: torch.Tensor, logits: torch.Tensor, rows: RowSampling, start_positions: torch.Tensor,
               draft_dist: DraftDist | None, inputs_fixed: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """step.accept's (num_accepted [bs], bonus [bs]). inputs_fixed: logits, drafts and q sit where
        the next step of this shape will find them again (the forward replayed a graph)."""
        if not (self.enabled and inputs_fixed):
            return step.accept(drafts, logits, rows, start_positions, draft_dist)
        shape = (tuple(logits.shape), logits.dtype, rows.bound, draft_dist is None)
        key = shape + (logits.data_ptr(), drafts.data_ptr(),
                       None if draft_dist is None else (draft_dist.probs.data_ptr(), draft_dist.tokens.data_ptr()))
        captured = self._graphs.get(key)
        if captured is None:
            if len(self._graphs) >= MAX_GRAPHS or self._addresses.get(shape, 0) >= MAX_ADDRESSES_PER_SHAPE:
                if not self._full_warned:
                    logger.warning("ORTHRUS accept graphs: %d captured (at most %d, %d input addresses per shape); "
                                   "the others accept eagerly", len(self._graphs), MAX_GRAPHS, MAX_ADDRESSES_PER_SHAPE)
                    self._full_warned = True
                return step.accept(drafts, logits, rows, start_positions, draft_dist)
            self._addresses[shape] = self._addresses.get(shape, 0) + 1
            captured = self._capture(key, drafts, logits, rows, start_positions, draft_dist)
        captured.load(rows, start_positions)
        captured.graph.replay()
        self.replays += 1
        return captured.num_accepted, captured.bonus

    def _capture(self, key, drafts, logits, rows, start_positions, draft_dist) -> _Captured:
        captured = _Captured(rows, start_positions)

        def run():
            return step.accept(drafts, logits, captured.rows, captured.start, draft_dist)

        # As torch.cuda.graphs.make_graphed_callables: warm up on a side stream (lazy inits, Triton's
        # compilation of the fused race) before capturing. It reads only; nothing it writes is kept.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run()
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()  # one pool: the graphs replay one at a time
        # thread_local: SGLang's other threads (detokenizer IPC, metrics) may touch CUDA meanwhile.
        with torch.cuda.graph(captured.graph, pool=self._pool, capture_error_mode="thread_local"):
            captured.num_accepted, captured.bonus = run()
        self._graphs[key] = captured
        logger.info("ORTHRUS accept graph %d captured: batch %d, block %d, candidate bound %d",
                    len(self._graphs), logits.shape[0], logits.shape[1], rows.bound)
        return captured
