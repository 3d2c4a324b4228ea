"""Simulated acceptance for benchmarks (NOT lossless): SGLang's pinned switch and our geometric profile.

SGLANG_SIMULATE_ACC_LEN: every request commits the same number of tokens per step whatever the
model accepted, so throughput can be measured at a chosen tau (bench/throughput.py --simulate-tau).
ORTHRUS_SIMULATE_ACCEPT_RATE=r: each request accepts draft i with probability r once drafts
1..i-1 were (bench/throughput.py --simulate-accept-rate): the per-request spread of a trained
model, tau = (1 - r^B) / (1 - r). The token rule is the one SGLang's DFLASH worker applies: in
'fixed' token mode every committed token is ``FIXED_TOKEN_ID``; in 'real-draft-token' mode
(SGLANG_SIMULATE_ACC_TOKEN_MODE) the drafts and the AR argmax after them.
"""

from __future__ import annotations

import math

import torch

FIXED_TOKEN_ID = 100


def geometric_accepted(rate: float, batch_size: int, block_size: int, device) -> torch.Tensor:
    """Accepted drafts per request, long [bs]: P(n >= i) = rate^i, capped at block_size - 1."""
    u = torch.rand(batch_size, device=device, dtype=torch.float64).clamp_(min=1e-300)
    return (u.log() / math.log(rate)).floor().clamp_(max=block_size - 1).long()


def pin_commit_length(commit_len: int | torch.Tensor, *, candidates: torch.Tensor, target_top1: torch.Tensor,
                      real_drafts: bool, accept_len: torch.Tensor, commit_lens: torch.Tensor, bonus: torch.Tensor,
                      out_tokens: torch.Tensor) -> None:
    """Overwrite the step's outputs in place so every request commits ``commit_len`` tokens (one int for
    all, or long [bs] per request) (``candidates`` [bs, B] = t, d_1..d_{B-1}; ``target_top1`` [bs, B]
    the AR argmax)."""
    bs, B = candidates.shape
    if not isinstance(commit_len, torch.Tensor):
        commit_len = torch.full((bs,), commit_len, dtype=torch.int64, device=candidates.device)
    accepted = commit_len.to(torch.int64) - 1
    accept_len.copy_(accepted)
    commit_lens.copy_(commit_len)
    if not real_drafts:
        bonus.fill_(FIXED_TOKEN_ID)
        out_tokens.fill_(FIXED_TOKEN_ID)
        return
    cols = torch.arange(B, device=candidates.device).view(1, B)
    drafts = torch.cat([candidates[:, 1:], torch.zeros_like(candidates[:, :1])], dim=1)  # d_1..d_{B-1}, 0
    bonus.copy_(target_top1.gather(1, accepted.view(bs, 1)).view(bs).to(dtype=bonus.dtype))
    tokens = torch.where(cols < accepted.view(bs, 1), drafts,
                         torch.where(cols == accepted.view(bs, 1), bonus.view(bs, 1).to(drafts.dtype), 0))
    out_tokens.copy_(tokens.to(out_tokens.dtype))
