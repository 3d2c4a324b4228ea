"""The keyed exponential race (sampling.sample_keyed) as one Triton kernel, for CUDA.

sample_keyed draws token argmax_v p[v] / -log U(key, v): in PyTorch the hash of every (row, token)
is about 25 int64 element-wise passes over [rows, V] (two MurmurHash3 finalisers emulated in int64),
then the log, the division and the argmax: at a 152K vocabulary each bonus or first-token draw
reads and writes a few hundred MB, as dozens of launches (issue 18: the eager acceptance at T=0.7).
The kernel reads p once and keeps the hash in uint32 registers: one launch, one pass.

It computes exactly the PyTorch definition (sampling.uniforms: the same 23-bit uniforms, the same
-log, the same p > 0 rule, the first maximum on ties), so both give the same token for the same key;
tests/test_keyed_race.py holds them equal in Triton's interpreter. Off unless ORTHRUS_FUSED_RACE=1
(enabled) until the GPU suite has run it on a GPU (docs/design.md, "Sampling").
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: sample_keyed keeps its PyTorch path
    triton = None

ENV = "ORTHRUS_FUSED_RACE"


def fused_race_enabled(device: torch.device) -> bool:
    """The kernel replaces the PyTorch race on CUDA when ORTHRUS_FUSED_RACE=1 (and always under
    TRITON_INTERPRET=1, the interpreter's CPU tensors, for the tests)."""
    if triton is None or os.environ.get(ENV, "").strip().lower() not in ("1", "true", "yes", "on"):
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _fmix32(x):
        # MurmurHash3's finaliser on uint32 (multiplication wraps mod 2^32, as sampling._mul32 emulates).
        x = x ^ (x >> 16)
        x = x * 0x85EBCA6B
        x = x ^ (x >> 13)
        x = x * 0xC2B2AE35
        return x ^ (x >> 16)

    @triton.jit
    def _keyed_race_kernel(probs_ptr, keys_ptr, out_ptr, vocab, stride_row, UNIFORM_SHIFT: tl.constexpr,
                           BLOCK: tl.constexpr):
        row = tl.program_id(0)
        key = tl.load(keys_ptr + row).to(tl.uint32)  # keys are 32-bit values held in int64
        best_score = tl.full([], -2.0, tl.float32)
        best_index = tl.full([], 0, tl.int64)
        for start in range(0, vocab, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            in_vocab = cols < vocab
            p = tl.load(probs_ptr + row * stride_row + cols, mask=in_vocab, other=0.0)
            h = _fmix32(key ^ _fmix32(cols.to(tl.uint32) + 0x632BE5AB))
            u = ((h >> UNIFORM_SHIFT).to(tl.float32) + 0.5) * (1.0 / (1 << (32 - UNIFORM_SHIFT)))
            score = tl.where(p > 0, p / -tl.log(u), -1.0)
            score = tl.where(in_vocab, score, -3.0)  # past the vocabulary: below every real score
            block_best = tl.max(score, axis=0)
            block_index = tl.argmax(score, axis=0, tie_break_left=True).to(tl.int64) + start
            better = block_best > best_score  # strict: an earlier block keeps a tie (torch.argmax: the first)
            best_index = tl.where(better, block_index, best_index)
            best_score = tl.where(better, block_best, best_score)
        tl.store(out_ptr + row, best_index)


def keyed_race(probs: torch.Tensor, keys: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """The token each row of probs [R, V] (float32) draws with key keys[R] (int64): long [R]."""
    from .sampling import _UNIFORM_BITS

    probs = probs.contiguous()
    rows, vocab = probs.shape
    out = torch.empty(rows, dtype=torch.int64, device=probs.device)
    if rows:
        _keyed_race_kernel[(rows,)](probs, keys.to(torch.int64).contiguous(), out, vocab, probs.stride(0),
                                    UNIFORM_SHIFT=32 - _UNIFORM_BITS, BLOCK=block)
    return out
