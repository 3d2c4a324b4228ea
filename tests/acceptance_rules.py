"""The textbook acceptance rules, dense and with explicit randomness: the reference that
orthrus_sglang/accept.py:accept_block (sparse, keyed, chunked) is tested against. Test-only."""

from __future__ import annotations

import torch

from orthrus_sglang.accept import count_accepted, rejected_onehot, residual_dist
from orthrus_sglang.sampling import race


def rejection_accept(
    draft_tokens: torch.Tensor,
    draft_probs: torch.Tensor,
    target_probs: torch.Tensor,
    *,
    uniforms: torch.Tensor,
    exponentials: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Speculative rejection sampling: the emitted tokens are distributed exactly as p.

    draft_tokens: long [bs, k] sampled from draft_probs; draft_probs (q): [bs, k, V];
    target_probs (p): [bs, k+1, V]; uniforms: [bs, k] in (0, 1); exponentials: [bs, V],
    i.i.d. Exp(1), used to draw the bonus by the exponential race (argmax of prob / E is a
    draw from prob) so that all randomness is an explicit input.
    Draft i is accepted iff every earlier one was and u_i * q(d_i) < p(d_i) (probability
    min(1, p/q)). At the first rejection n the bonus comes from norm(max(0, p_n - q_n));
    if all k are accepted it comes from p_k.
    Returns (num_accepted long [bs] in 0..k, bonus long [bs]).
    """
    num_accepted, bonus_dist = rejection_bonus_dist(draft_tokens, draft_probs, target_probs, uniforms)
    return num_accepted, race(bonus_dist, exponentials)


def rejection_bonus_dist(draft_tokens, draft_probs, target_probs, uniforms) -> tuple[torch.Tensor, torch.Tensor]:
    """rejection_accept's (num_accepted [bs], distribution of the bonus token [bs, V])."""
    bs, k = draft_tokens.shape
    idx = draft_tokens.unsqueeze(-1)
    p_draft = target_probs[:, :k].gather(-1, idx).squeeze(-1)  # [bs, k]
    q_draft = draft_probs.gather(-1, idx).squeeze(-1)  # [bs, k]
    num_accepted = count_accepted(uniforms * q_draft < p_draft)
    rows = torch.arange(bs, device=draft_tokens.device)
    p_n = target_probs[rows, num_accepted]  # [bs, V]
    q_n = draft_probs[rows, num_accepted.clamp(max=max(k - 1, 0))] if k else torch.zeros_like(p_n)
    return num_accepted, residual_dist(p_n, q_n, num_accepted < k)


def target_only_accept(
    draft_tokens: torch.Tensor,
    target_probs: torch.Tensor,
    *,
    uniforms: torch.Tensor,
    exponentials: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rejection sampling for deterministic (greedy) drafts: q is one-hot at each draft.

    Then min(1, p/q) = p(d_i): draft i is accepted iff u_i < p(d_i); at the first rejection the
    bonus comes from norm(max(0, p - onehot(d))) = p with d's mass removed; after k accepts it
    comes from p_k. The emitted tokens are distributed exactly as p, without materialising q.
    draft_tokens: long [bs, k]; target_probs: [bs, k+1, V]; uniforms: [bs, k]; exponentials: [bs, V].
    """
    num_accepted, bonus_dist = target_only_bonus_dist(draft_tokens, target_probs, uniforms)
    return num_accepted, race(bonus_dist, exponentials)


def target_only_bonus_dist(draft_tokens, target_probs, uniforms) -> tuple[torch.Tensor, torch.Tensor]:
    """target_only_accept's (num_accepted [bs], distribution of the bonus token [bs, V])."""
    bs, k = draft_tokens.shape
    p_draft = target_probs[:, :k].gather(-1, draft_tokens.unsqueeze(-1)).squeeze(-1)
    num_accepted = count_accepted(uniforms < p_draft)
    p_n = target_probs[torch.arange(bs, device=draft_tokens.device), num_accepted]  # [bs, V]
    return num_accepted, residual_dist(p_n, rejected_onehot(draft_tokens, num_accepted, p_n), num_accepted < k)
