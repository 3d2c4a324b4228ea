"""What a step of each block size runs on: its attention backend and its TARGET_VERIFY CUDA graphs.

SGLang builds one pair at startup, for --speculative-num-draft-tokens (the largest block size).
Under ORTHRUS_BLOCK_POLICY=adaptive or cycle a step may take a smaller one, so every other size gets
its own pair once SGLang has captured the startup graphs (compat.verify_graphs_for_block_size, the
way SGLang's adaptive EAGLE does it); ``use(B)`` puts B's pair on the model runner for one step and
puts the startup pair back, so prefill and everything else SGLang runs sees its own.

Eager steps (CPU, --disable-cuda-graph) need no extra pair: every backend plans a verify from the
step's own width (``spec_info.draft_token_num``), so all sizes share the startup backend.
"""

from __future__ import annotations

import contextlib
import logging
import time

from . import compat

logger = logging.getLogger(__name__)


class BlockStates:
    def __init__(self, model_runner, max_block_size: int):
        self.model_runner = model_runner
        self.max_block_size = int(max_block_size)
        self._pairs: dict[int, tuple] = {}

    def build(self, block_sizes: tuple[int, ...]) -> tuple[int, ...]:
        """After SGLang's startup capture: a backend and graphs for every other size (none when eager).
        Returns the sizes a step can take: a size whose graphs did not fit in GPU memory is left out,
        with a warning, rather than failing the server."""
        import torch

        runner = self.model_runner
        self._pairs[self.max_block_size] = (runner.attn_backend, runner.decode_cuda_graph_runner)
        if runner.decode_cuda_graph_runner is None:
            return tuple(block_sizes)
        for b in sorted(block_sizes, reverse=True):  # the larger sizes first: they are the ones tau pays for
            if b in self._pairs:
                continue
            free_before, start = _free_gpu_bytes(), time.perf_counter()
            try:
                self._pairs[b] = compat.verify_graphs_for_block_size(runner, b)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                logger.warning("ORTHRUS block size %d left out: its CUDA graphs do not fit (%.2f GB free); lower "
                               "--mem-fraction-static or set ORTHRUS_BLOCK_SIZES", b, _free_gpu_bytes() / 1e9)
                continue
            logger.info("ORTHRUS block size %d: attention backend and CUDA graphs in %.1f s, %.2f GB", b,
                        time.perf_counter() - start, (free_before - _free_gpu_bytes()) / 1e9)
        return tuple(b for b in block_sizes if b in self._pairs)

    @contextlib.contextmanager
    def use(self, block_size: int):
        """The model runner runs block_size's backend and graphs inside this block."""
        pair = self._pairs.get(block_size)
        if pair is None or block_size == self.max_block_size:
            yield
            return
        runner = self.model_runner
        saved = runner.attn_backend, runner.decode_cuda_graph_runner
        runner.attn_backend, runner.decode_cuda_graph_runner = pair
        try:
            yield
        finally:
            runner.attn_backend, runner.decode_cuda_graph_runner = saved


def _free_gpu_bytes() -> int:
    import torch

    return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else 0
