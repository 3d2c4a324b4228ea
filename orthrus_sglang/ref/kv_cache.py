"""Preallocated AR key/value cache: one row ("slot") per running sequence.

Only the AR view writes here (prefill and verify); the diffusion view reads the committed
prefix and keeps its own block keys private. A row's entries past its committed length are
stale (rejected drafts, prompt padding) and are masked out, then overwritten by the next
verify: nothing is ever copied or concatenated to grow the cache.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, *, num_layers: int, num_slots: int, max_len: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (num_layers, num_slots, num_kv_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len

    @property
    def num_slots(self) -> int:
        return self.keys.shape[1]

    def write(self, layer: int, slots: torch.Tensor, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """slots: long [bs]; positions: long [bs, T]; k, v: [bs, H_kv, T, D]."""
        rows = slots.unsqueeze(1)  # [bs, 1] broadcasts against positions [bs, T]
        # Advanced indices around a slice put the indexed dims first: the target is [bs, T, H_kv, D].
        self.keys[layer][rows, :, positions] = k.transpose(1, 2)
        self.values[layer][rows, :, positions] = v.transpose(1, 2)

    def read(self, layer: int, slots: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``length`` positions of each slot: two [bs, H_kv, length, D] tensors."""
        return self.keys[layer, slots, :, :length], self.values[layer, slots, :, :length]
