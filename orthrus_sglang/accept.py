"""Acceptance of a drafted block: pure tensor functions shared by every decode path.

Convention (ORTHRUS.md): q = the diffusion view's (draft) distribution, p = the AR view's
(target) distribution. A block has B rows; row 0 holds the last committed token t, rows
1..B-1 hold the drafts d_1..d_{B-1}. The AR verify pass gives B target rows: row i is the
distribution of position L+i+1, so target row i checks draft d_{i+1} and target row B-1 is
only ever used for the bonus token.
"""

from __future__ import annotations

import torch


def greedy_accept(draft_tokens: torch.Tensor, target_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Longest prefix of drafts equal to the AR argmax, and the bonus token after it.

    draft_tokens: long [bs, B-1]; target_tokens: long [bs, B] (AR argmax per block row).
    Returns (num_accepted long [bs] in 0..B-1, bonus long [bs] = target_tokens[n]).
    """
    matches = draft_tokens == target_tokens[:, :-1]
    num_accepted = matches.to(torch.int64).cumprod(dim=1).sum(dim=1)
    bonus = target_tokens.gather(1, num_accepted.unsqueeze(1)).squeeze(1)
    return num_accepted, bonus


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
    target_probs (p): [bs, k+1, V]; uniforms: [bs, k] in [0, 1); exponentials: [bs, V],
    i.i.d. Exp(1), used to draw the bonus by the exponential race (argmax of prob / E is a
    draw from prob) so that all randomness is an explicit input.
    Draft i is accepted iff every earlier one was and u_i * q(d_i) < p(d_i) (probability
    min(1, p/q)). At the first rejection n the bonus comes from norm(max(0, p_n - q_n));
    if all k are accepted it comes from p_k.
    Returns (num_accepted long [bs] in 0..k, bonus long [bs]).
    """
    bs, k = draft_tokens.shape
    idx = draft_tokens.unsqueeze(-1)
    p_draft = target_probs[:, :k].gather(-1, idx).squeeze(-1)  # [bs, k]
    q_draft = draft_probs.gather(-1, idx).squeeze(-1)  # [bs, k]
    accepted = uniforms * q_draft < p_draft
    num_accepted = accepted.to(torch.int64).cumprod(dim=1).sum(dim=1)

    rows = torch.arange(bs, device=draft_tokens.device)
    p_n = target_probs[rows, num_accepted]  # [bs, V]
    # Past the last draft there is no q: pad with zeros so the residual is p itself.
    q_padded = torch.cat([draft_probs, torch.zeros_like(draft_probs[:, :1])], dim=1)
    residual = (p_n - q_padded[rows, num_accepted]).clamp_(min=0.0)
    mass = residual.sum(dim=-1, keepdim=True)
    # p == q on a row leaves no residual mass; a rejection is then impossible in exact
    # arithmetic, and rounding is resolved by falling back to p.
    bonus_dist = torch.where(mass > 1e-12, residual / mass.clamp(min=1e-30), p_n)
    bonus = (bonus_dist / exponentials).argmax(dim=-1)
    return num_accepted, bonus


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
    bs, k = draft_tokens.shape
    p_draft = target_probs[:, :k].gather(-1, draft_tokens.unsqueeze(-1)).squeeze(-1)
    num_accepted = (uniforms < p_draft).to(torch.int64).cumprod(dim=1).sum(dim=1)
    rows = torch.arange(bs, device=draft_tokens.device)
    p_n = target_probs[rows, num_accepted]  # [bs, V]
    if k:
        # Remove the rejected draft's mass (rows that accepted all k drafts keep p_k whole).
        rejected_at = num_accepted.clamp(max=k - 1).unsqueeze(1)
        rejected_token = draft_tokens.gather(1, rejected_at)  # [bs, 1]
        keep = torch.ones_like(p_n).scatter_(1, rejected_token, 0.0)
        residual = torch.where((num_accepted < k).unsqueeze(1), p_n * keep, p_n)
        mass = residual.sum(dim=-1, keepdim=True)
        p_n = torch.where(mass > 1e-12, residual / mass.clamp(min=1e-30), p_n)
    bonus = (p_n / exponentials).argmax(dim=-1)
    return num_accepted, bonus
