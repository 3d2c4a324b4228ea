"""The keyed exponential race (sampling.sample_keyed) as one Triton kernel, for CUDA.

sample_keyed draws token argmax_v p[v] / -log U(key, v): in PyTorch the hash of every (row, token)
is about 25 int64 element-wise passes over [rows, V] (two MurmurHash3 finalisers emulated in int64),
then the log, the division and the argmax: at a 152K vocabulary each bonus or first-token draw
reads and writes a few hundred MB, as dozens of launches (issue 18: the eager acceptance at T=0.7).
The kernel reads p once and keeps the hash in uint32 registers: one launch, one pass.

It computes exactly the PyTorch definition (sampling.uniforms: the same 23-bit uniforms, the same
-log, the same p > 0 rule, the first maximum on ties), so both give the same token for the same key;
tests/test_keyed_race.py holds them equal in Triton's interpreter, tests/gpu on an H100. Off unless
ORTHRUS_FUSED_RACE=1 until its speed is measured (docs/sglang.md). The kernel lives in _keyed_race_kernel.py,
imported only when enabled: importing triton costs about 0.6 s at every start otherwise.
"""

from __future__ import annotations

import functools
import os

import torch

ENV = "ORTHRUS_FUSED_RACE"


def fused_race_enabled(device: torch.device) -> bool:
    """The kernel replaces the PyTorch race on CUDA when ORTHRUS_FUSED_RACE=1 and triton is installed
    (and on CPU tensors under TRITON_INTERPRET=1, Triton's interpreter, for the tests)."""
    if os.environ.get(ENV, "").strip().lower() not in ("1", "true", "yes", "on"):
        return False
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return False
    return _kernel() is not None


@functools.lru_cache(maxsize=None)
def _kernel():
    try:
        from ._keyed_race_kernel import keyed_race_kernel
    except ImportError:  # no triton: sample_keyed keeps its PyTorch path
        return None
    return keyed_race_kernel


def keyed_race(probs: torch.Tensor, keys: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """The token each row of probs [R, V] (float32) draws with key keys[R] (int64): long [R]."""
    from .sampling import _UNIFORM_BITS

    probs = probs.contiguous()
    rows, vocab = probs.shape
    out = torch.empty(rows, dtype=torch.int64, device=probs.device)
    if rows:
        _kernel()[(rows,)](probs, keys.to(torch.int64).contiguous(), out, vocab, probs.stride(0),
                           UNIFORM_SHIFT=32 - _UNIFORM_BITS, BLOCK=block)
    return out
