"""The spec-v2 FutureMap without the per-step host wait, for ORTHRUS on block_attention.

SGLang's FutureMap gives backends that plan on the host (flashinfer) the exact committed lengths
of step k before step k+1 is prepared: ``resolve_seq_lens_cpu`` waits on the host for step k's
accept, so the GPU idles while the host prepares every step. With block_attention no kernel of
the step reads host lengths (they are on the device), so this map fills the host mirror with
an upper bound the host already knows, and the device lengths stay exact.
"""

from __future__ import annotations

import torch

from .compat import FutureMap, wait_for_published_lens


class OrthrusFutureMap(FutureMap):
    def __init__(self, *args, block_size: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.block_size = block_size

    def resolve_seq_lens_cpu(self, batch, **kwargs) -> None:
        draft_input = batch.spec_info
        if not self.needs_cpu_seq_lens or draft_input is None or draft_input.future_indices is None:
            return super().resolve_seq_lens_cpu(batch, **kwargs)
        wait_for_published_lens(self)  # the device-side gather below waits for step k; the host does not
        batch.seq_lens = self.new_seq_lens_buf[draft_input.future_indices]
        # The step writes its block at L..L+B-1, which the scheduler has allocated, so
        # L <= kv_allocated_len - B. Only attention planning reads this, and our kernels do not.
        upper = [max(r.kv.kv_allocated_len - self.block_size, 0) for r in batch.reqs]
        batch.seq_lens_cpu = torch.tensor(upper, dtype=torch.int64)
        batch.seq_lens_sum = sum(upper)
