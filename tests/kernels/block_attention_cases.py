"""Shared cases for block_attention against its PyTorch definition (CPU interpreter and GPU)."""

from __future__ import annotations

import torch

from orthrus_sglang.sgl.block_attention import block_attention, block_attention_reference


def make_case(*, bs, B, Hq, Hkv, D, prefix_lens, dtype, device, seed=0):
    """A paged KV pool with each request's slots scattered at random, like SGLang's allocator."""
    gen = torch.Generator().manual_seed(seed)
    need = sum(L + B for L in prefix_lens)
    slots = need + 64
    k_buffer = torch.randn(slots, Hkv, D, generator=gen).to(dtype)
    v_buffer = torch.randn(slots, Hkv, D, generator=gen).to(dtype)
    width = max(prefix_lens) + B + 8
    req_to_token = torch.zeros(bs + 2, width, dtype=torch.int32)
    order = torch.randperm(slots - 1, generator=gen) + 1
    pool_idx, used = torch.randperm(bs + 2, generator=gen)[:bs], 0
    for r, L in enumerate(prefix_lens):
        req_to_token[pool_idx[r], : L + B] = order[used: used + L + B].int()
        used += L + B
    q = torch.randn(bs * B, Hq, D, generator=gen).to(dtype)
    to = lambda t: t.to(device)  # noqa: E731
    return (to(q), to(k_buffer), to(v_buffer), to(req_to_token), to(pool_idx), to(torch.tensor(prefix_lens)))


def max_error(case, *, B, causal, num_splits):
    q, k, v, r2t, pool, lens = case
    scale = q.shape[-1] ** -0.5
    want = block_attention_reference(q, k, v, r2t, pool, lens, B, causal, scale).float()
    got = block_attention(q, k, v, r2t, pool, lens, B, causal, scale, num_splits).float()
    return (got - want).abs().max().item(), want.abs().max().item()
