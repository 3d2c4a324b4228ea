"""Two ways to run the training masks: dense masked SDPA (CPU, tests) and flex_attention (GPU).

Both build their masks from the same predicates (``blocks.ar_allowed`` / ``blocks.diff_allowed``).
SDPA materialises a bool [R, 1, Q, K] mask; flex_attention builds a block-sparse BlockMask, so
the many short blocks of a packed row cost little more than their own keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .blocks import Blocks, ar_allowed, ar_mask_dense, diff_allowed, diff_mask_dense
from .config import BACKENDS
from .data import Rows


class DenseAttention:
    name = "sdpa"

    def __init__(self, compute_dtype: torch.dtype):
        self.compute_dtype = compute_dtype

    def ar_mask(self, rows: Rows):
        return ar_mask_dense(rows).unsqueeze(1)

    def diff_mask(self, blocks: Blocks, row_len: int):
        return diff_mask_dense(blocks, row_len).unsqueeze(1)

    def __call__(self, q, k, v, mask) -> torch.Tensor:
        q, k, v = (t.to(self.compute_dtype) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


class FlexAttention:
    name = "flex"

    def __init__(self, compute_dtype: torch.dtype, *, compile: bool):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        self.compute_dtype, self.compile = compute_dtype, compile
        self._create_block_mask = create_block_mask
        # Compiled, flex_attention runs as one fused kernel that skips the masked-out tiles.
        self._attend = torch.compile(flex_attention, dynamic=False) if compile else flex_attention

    def ar_mask(self, rows: Rows):
        R, T = rows.ids.shape
        doc_start = rows.doc_start

        def mask_mod(b, h, q, kv):
            return ar_allowed(doc_start[b, q], q, kv)

        return self._create_block_mask(mask_mod, R, None, T, T, device=rows.ids.device, _compile=self.compile)

    def diff_mask(self, blocks: Blocks, row_len: int):
        R, NB = blocks.ids.shape
        B = blocks.block_size
        starts = blocks.starts.repeat_interleave(B, dim=1)  # [R, NB]: per diffusion-stream query
        anchors = blocks.anchors.repeat_interleave(B, dim=1)

        def mask_mod(b, h, q, kv):
            return diff_allowed(starts[b, q], anchors[b, q], q, kv, row_len=row_len, block_size=B)

        return self._create_block_mask(mask_mod, R, None, NB, row_len + NB, device=blocks.ids.device,
                                       _compile=self.compile)

    def __call__(self, q, k, v, mask) -> torch.Tensor:
        q, k, v = (t.to(self.compute_dtype) for t in (q, k, v))
        return self._attend(q, k, v, block_mask=mask, enable_gqa=True)


def make_attention(backend: str, *, device: torch.device, compute_dtype: torch.dtype):
    """``auto``: compiled flex_attention on CUDA, dense SDPA elsewhere."""
    if backend not in BACKENDS:
        raise ValueError(f"attention must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "flex" if device.type == "cuda" else "sdpa"
    if backend == "flex":
        return FlexAttention(compute_dtype, compile=device.type == "cuda")
    return DenseAttention(compute_dtype)
