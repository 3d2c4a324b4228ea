"""Attention of one ORTHRUS block over a request's paged KV, with device-only metadata.

Both passes of an ORTHRUS step attend the same keys: the committed prefix ``0..L-1`` plus the
block's own B slots ``L..L+B-1`` (``req_to_token[req, 0:L+B]``). The diffusion pass attends
all of them (non-causal), the verify pass causally (block row i sees ``0..L+i``).

Why our own kernel: SGLang's attention backends plan on the host from exact sequence lengths
(flashinfer's plan reads ``seq_lens_cpu``), so the scheduler must wait for step k's accept before
it can prepare step k+1, and the GPU idles for the whole host-side preparation (docs/results.md,
the H200 profile: 4-5 ms of every step). This kernel reads the lengths on the device and sizes its grid
from the batch size alone, so a captured CUDA graph needs no host metadata at all and the host
may run a full step ahead, as it does for plain AR decoding.

Layout: grid (request, KV head, split). One program holds the B x G query rows of a KV head
(G = query heads per KV head), so every K/V tile is loaded once for the whole block (tensor-core
dots), and walks its split of the keys with an online softmax. With more than one split a second
kernel merges the splits' partial outputs by their log-sum-exp.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs without triton: the reference below still works
    triton = None


def block_attention_reference(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                              req_to_token: torch.Tensor, req_pool_indices: torch.Tensor,
                              prefix_lens: torch.Tensor, block_size: int, causal: bool,
                              sm_scale: float) -> torch.Tensor:
    """Plain PyTorch twin of ``block_attention`` (fp32 math), for tests and as the definition.

    q: [bs*B, Hq, D]; k_buffer/v_buffer: [slots, Hkv, D]; returns [bs*B, Hq, D] in q's dtype.
    """
    bs, B = prefix_lens.numel(), block_size
    _, num_q_heads, head_dim = q.shape
    group = num_q_heads // k_buffer.shape[1]
    out = torch.empty_like(q)
    for r in range(bs):
        L = int(prefix_lens[r])
        slots = req_to_token[int(req_pool_indices[r]), : L + B].long()
        k = k_buffer[slots].float().repeat_interleave(group, dim=1)  # [L+B, Hq, D]
        v = v_buffer[slots].float().repeat_interleave(group, dim=1)
        qr = q[r * B:(r + 1) * B].float()  # [B, Hq, D]
        scores = torch.einsum("ihd,khd->hik", qr, k) * sm_scale  # [Hq, B, L+B]
        if causal:
            key_pos = torch.arange(L + B, device=q.device)
            row_pos = L + torch.arange(B, device=q.device)
            scores = scores.masked_fill(key_pos[None, None, :] > row_pos[None, :, None], float("-inf"))
        out[r * B:(r + 1) * B] = torch.einsum("hik,khd->ihd", scores.softmax(-1), v).to(q.dtype)
    return out


if triton is not None:

    @triton.jit
    def _block_attn_split_kernel(
        Q, K, V, ReqToToken, ReqPoolIdx, PrefixLens, Out, PartialO, PartialLse,
        sm_scale,
        stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
        stride_r2t,
        B: tl.constexpr, G: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
        ROWS: tl.constexpr, BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr, CAUSAL: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        req = tl.program_id(0)
        kv_head = tl.program_id(1)
        split = tl.program_id(2)

        prefix_len = tl.load(PrefixLens + req).to(tl.int32)
        pool_idx = tl.load(ReqPoolIdx + req).to(tl.int64)
        kv_len = prefix_len + B
        # Splits cover whole BLOCK_N tiles; trailing splits of a short request get no keys.
        tiles = tl.cdiv(kv_len, BLOCK_N)
        tiles_per_split = tl.cdiv(tiles, NUM_SPLITS)
        start = split * tiles_per_split * BLOCK_N
        end = tl.minimum(start + tiles_per_split * BLOCK_N, kv_len)

        # Row r = (block token i, head g of this KV head's group): i = r // G, g = r % G.
        rows = tl.arange(0, ROWS)
        tok = rows // G
        head = kv_head * G + rows % G
        row_ok = tok < B
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d < D
        q_ptrs = Q + (req * B + tok)[:, None] * stride_qt + head[:, None] * stride_qh + offs_d[None, :]
        q = tl.load(q_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        row_pos = prefix_len + tok  # absolute position of each query row

        m_i = tl.full([ROWS], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([ROWS], dtype=tl.float32)
        acc = tl.zeros([ROWS, BLOCK_D], dtype=tl.float32)
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            n_ok = offs_n < end
            slots = tl.load(ReqToToken + pool_idx * stride_r2t + offs_n, mask=n_ok, other=0).to(tl.int64)
            k = tl.load(K + slots[None, :] * stride_kt + kv_head * stride_kh + offs_d[:, None],
                        mask=n_ok[None, :] & d_ok[:, None], other=0.0)  # [BLOCK_D, BLOCK_N]
            qk = tl.dot(q, k, input_precision=PRECISION) * sm_scale
            keep = n_ok[None, :]
            if CAUSAL:
                keep = keep & (offs_n[None, :] <= row_pos[:, None])
            qk = tl.where(keep, qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with no key yet
            p = tl.exp(qk - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            v = tl.load(V + slots[:, None] * stride_vt + kv_head * stride_vh + offs_d[None, :],
                        mask=n_ok[:, None] & d_ok[None, :], other=0.0)  # [BLOCK_N, BLOCK_D]
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            l_i = l_i * alpha + tl.sum(p, 1)
            m_i = m_new

        l_safe = tl.where(l_i == 0.0, 1.0, l_i)
        o = acc / l_safe[:, None]
        if NUM_SPLITS == 1:
            o_ptrs = Out + (req * B + tok)[:, None] * stride_ot + head[:, None] * stride_oh + offs_d[None, :]
            tl.store(o_ptrs, o.to(Out.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
        else:
            # Partial buffers: [bs*B, Hq, NUM_SPLITS, BLOCK_D] and [bs*B, Hq, NUM_SPLITS] (fp32).
            lse = tl.where(l_i == 0.0, float("-inf"), m_i + tl.log(l_safe))
            base = ((req * B + tok) * (G * tl.num_programs(1)) + head) * NUM_SPLITS + split
            tl.store(PartialO + base[:, None] * BLOCK_D + offs_d[None, :], o, mask=row_ok[:, None])
            tl.store(PartialLse + base, lse, mask=row_ok)

    @triton.jit
    def _block_attn_merge_kernel(PartialO, PartialLse, Out, stride_ot, stride_oh, num_q_heads,
                                 D: tl.constexpr, BLOCK_D: tl.constexpr, NUM_SPLITS: tl.constexpr):
        t = tl.program_id(0)
        h = tl.program_id(1)
        base = (t * num_q_heads + h) * NUM_SPLITS
        offs_s = tl.arange(0, NUM_SPLITS)
        lse = tl.load(PartialLse + base + offs_s)
        m = tl.max(lse, 0)
        w = tl.exp(lse - m)  # empty splits have lse -inf: weight 0
        offs_d = tl.arange(0, BLOCK_D)
        o = tl.load(PartialO + (base + offs_s)[:, None] * BLOCK_D + offs_d[None, :])
        out = tl.sum(o * w[:, None], 0) / tl.sum(w, 0)
        tl.store(Out + t * stride_ot + h * stride_oh + offs_d, out.to(Out.dtype.element_ty), mask=offs_d < D)


def num_splits_for(batch_size: int, num_kv_heads: int, num_sms: int) -> int:
    """Splits of the key range per (request, KV head): about two waves of programs on the GPU.

    A power of two (the merge kernel's arange), fixed by the batch size alone, so the number is
    the same at CUDA-graph capture and replay.
    """
    wanted = max(1, (2 * num_sms) // max(1, batch_size * num_kv_heads))
    return min(32, 1 << (wanted.bit_length() - 1))


def block_attention(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                    req_to_token: torch.Tensor, req_pool_indices: torch.Tensor, prefix_lens: torch.Tensor,
                    block_size: int, causal: bool, sm_scale: float, num_splits: int,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """q: [bs*B, Hq, D] (rows of request r at r*B..r*B+B-1); k/v_buffer: [slots, Hkv, D], the layer's
    KV pool, already holding the block's K/V at ``req_to_token[req, L:L+B]``; prefix_lens: [bs] (L).
    Returns [bs*B, Hq, D]. ``num_splits`` must be a power of two; 1 gives a batch-invariant result."""
    bs = prefix_lens.numel()
    num_tokens, num_q_heads, head_dim = q.shape
    num_kv_heads = k_buffer.shape[1]
    if num_tokens != bs * block_size:
        raise ValueError(f"q has {num_tokens} rows, expected batch {bs} x block {block_size}")
    if num_q_heads % num_kv_heads:
        raise ValueError(f"{num_q_heads} query heads are not a multiple of {num_kv_heads} KV heads")
    if num_splits < 1 or num_splits & (num_splits - 1):
        raise ValueError(f"num_splits must be a power of two, got {num_splits}")
    group = num_q_heads // num_kv_heads
    if out is None:
        out = torch.empty_like(q)
    block_d = triton.next_power_of_2(head_dim)
    rows = max(16, triton.next_power_of_2(block_size * group))
    block_n = 64 if rows <= 64 else 32  # keeps the fp32 score tile and the accumulator in registers
    if num_splits > 1:
        partial_o = torch.empty((num_tokens, num_q_heads, num_splits, block_d), dtype=torch.float32, device=q.device)
        partial_lse = torch.empty((num_tokens, num_q_heads, num_splits), dtype=torch.float32, device=q.device)
    else:
        partial_o = partial_lse = out  # unused
    _block_attn_split_kernel[(bs, num_kv_heads, num_splits)](
        q, k_buffer, v_buffer, req_to_token, req_pool_indices, prefix_lens, out, partial_o, partial_lse,
        sm_scale,
        q.stride(0), q.stride(1), k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0), v_buffer.stride(1),
        out.stride(0), out.stride(1), req_to_token.stride(0),
        B=block_size, G=group, D=head_dim, BLOCK_D=block_d, ROWS=rows, BLOCK_N=block_n,
        NUM_SPLITS=num_splits, CAUSAL=causal,
        # fp32 serving and the exact fp32 tests: no silent tf32 rounding
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=4 if rows <= 64 else 8, num_stages=2,
    )
    if num_splits > 1:
        _block_attn_merge_kernel[(num_tokens, num_q_heads)](
            partial_o, partial_lse, out, out.stride(0), out.stride(1), num_q_heads,
            D=head_dim, BLOCK_D=block_d, NUM_SPLITS=num_splits, num_warps=4)
    return out


