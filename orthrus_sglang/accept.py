"""Acceptance of a drafted block: pure tensor functions shared by every decode path.

Convention (ORTHRUS.md): q = the diffusion view's (draft) distribution, p = the AR view's
(target) distribution. A block has B rows; row 0 holds the last committed token t, rows
1..B-1 hold the drafts d_1..d_{B-1}. The AR verify pass gives B target rows: row i is the
distribution of position L+i+1, so target row i checks draft d_{i+1} and target row B-1 is
only ever used for the bonus token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .sampling import STREAM_ACCEPT, STREAM_DRAFT, STREAM_TOKEN, filtered_probs, row_keys, sample_keyed, uniforms


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
    num_accepted, bonus_dist = rejection_bonus_dist(draft_tokens, draft_probs, target_probs, uniforms)
    return num_accepted, (bonus_dist / exponentials).argmax(dim=-1)


def rejection_bonus_dist(draft_tokens, draft_probs, target_probs, uniforms) -> tuple[torch.Tensor, torch.Tensor]:
    """rejection_accept's (num_accepted [bs], distribution of the bonus token [bs, V])."""
    bs, k = draft_tokens.shape
    idx = draft_tokens.unsqueeze(-1)
    p_draft = target_probs[:, :k].gather(-1, idx).squeeze(-1)  # [bs, k]
    q_draft = draft_probs.gather(-1, idx).squeeze(-1)  # [bs, k]
    accepted = uniforms * q_draft < p_draft
    num_accepted = accepted.to(torch.int64).cumprod(dim=1).sum(dim=1)

    rows = torch.arange(bs, device=draft_tokens.device)
    p_n = target_probs[rows, num_accepted]  # [bs, V]
    # Past the last draft there is no q: the residual is p itself.
    q_n = draft_probs[rows, num_accepted.clamp(max=max(k - 1, 0))] if k else torch.zeros_like(p_n)
    q_n = torch.where((num_accepted < k).view(bs, 1), q_n, torch.zeros_like(q_n))
    residual = (p_n - q_n).clamp_(min=0.0)
    mass = residual.sum(dim=-1, keepdim=True)
    # p == q on a row leaves no residual mass; a rejection is then impossible in exact
    # arithmetic, and rounding is resolved by falling back to p.
    return num_accepted, torch.where(mass > 1e-12, residual / mass.clamp(min=1e-30), p_n)


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
    return num_accepted, (bonus_dist / exponentials).argmax(dim=-1)


def target_only_bonus_dist(draft_tokens, target_probs, uniforms) -> tuple[torch.Tensor, torch.Tensor]:
    """target_only_accept's (num_accepted [bs], distribution of the bonus token [bs, V])."""
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
    return num_accepted, p_n


# ---- the one entry point both engines use -------------------------------------------------------
@dataclass
class RowSampling:
    """Per-request sampling of a batch, as device tensors [bs] plus the host-side candidate bound.

    greedy rows decode by argmax (their other fields are ignored); seeds key the counter-based
    random numbers (sampling.row_keys); bound = sampling.candidate_bound of the rows.
    """

    greedy: torch.Tensor  # bool [bs]
    temperature: torch.Tensor  # float [bs]
    top_k: torch.Tensor  # int64 [bs], 0 or >= V: off
    top_p: torch.Tensor  # float [bs]
    min_p: torch.Tensor  # float [bs]
    seeds: torch.Tensor  # int64 [bs]
    bound: int
    all_greedy: bool = False

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Filtered probabilities [bs, T, V] of logits [bs, T, V] (greedy rows: their own params, unused)."""
        return filtered_probs(logits, self.temperature.clamp(min=1e-5), self.top_k, self.top_p, self.min_p, self.bound)

    def sample(self, logits: torch.Tensor, positions: torch.Tensor, stream: int = STREAM_TOKEN):
        """(tokens long [bs, T], probs [bs, T, V] or None): argmax for greedy rows, a keyed draw otherwise.

        positions: int64 [bs, T], the positions of the rows of logits (they key the random numbers)."""
        top1 = logits.argmax(dim=-1)
        if self.all_greedy:
            return top1, None
        probs = self.probs(logits)
        drawn = sample_keyed(probs, row_keys(self.seeds, positions, stream))
        return torch.where(self.greedy.view(-1, 1), top1, drawn), probs


def accept_block(drafts: torch.Tensor, target_logits: torch.Tensor, rows: RowSampling, start_positions: torch.Tensor,
                 draft_probs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept a drafted block for every request of a batch, greedy and sampled mixed.

    drafts: long [bs, B-1]; target_logits: [bs, B, V] (already biased/masked as AR would be);
    start_positions: int64 [bs], the position L of block row 0; draft_probs: q [bs, B-1, V] the
    drafts were sampled from (rejection sampling), or None: the drafts are deterministic (greedy
    argmax of the diffusion view) and sampled rows use target-only verification.
    Greedy rows: the longest prefix equal to the AR argmax, exactly as AR greedy decoding.
    Sampled rows: emitted tokens are distributed exactly as AR sampling from rows.probs(target).
    Uniforms and the bonus draw are keyed by (seed, position of the row, stream).
    Returns (num_accepted long [bs] in 0..B-1, bonus long [bs]).
    """
    target_top1 = target_logits.argmax(dim=-1)
    num_accepted, bonus = greedy_accept(drafts, target_top1)
    if rows.all_greedy:
        return num_accepted, bonus
    bs, B, vocab = target_logits.shape
    positions = start_positions.to(torch.int64).view(bs, 1) + torch.arange(B, device=drafts.device)
    probs = rows.probs(target_logits)
    u = uniforms(row_keys(rows.seeds, positions[:, : B - 1], STREAM_ACCEPT))
    if draft_probs is None:
        n, dist = target_only_bonus_dist(drafts, probs, u)
    else:
        n, dist = rejection_bonus_dist(drafts, draft_probs, probs, u)
    # The bonus comes from target row n: its draw is keyed by that row's position, L + n.
    b = sample_keyed(dist.unsqueeze(1), row_keys(rows.seeds, (start_positions.to(torch.int64) + n).view(bs, 1),
                                                  STREAM_TOKEN)).view(bs)
    sampled = ~rows.greedy
    return torch.where(sampled, n, num_accepted), torch.where(sampled, b, bonus)


def sample_drafts(diffusion_logits: torch.Tensor, rows: RowSampling, start_positions: torch.Tensor):
    """Drafts from the diffusion view: (drafts long [bs, B-1], q [bs, B-1, V] or None).

    diffusion_logits: [bs, B-1, V] of block rows 0..B-2 (row j predicts position L+j+1). Greedy rows
    take the argmax; sampled rows draw from q = rows.probs(diffusion_logits), keyed by row position."""
    bs, k, _ = diffusion_logits.shape
    positions = start_positions.to(torch.int64).view(bs, 1) + torch.arange(k, device=diffusion_logits.device)
    return rows.sample(diffusion_logits, positions, STREAM_DRAFT)
