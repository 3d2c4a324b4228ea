"""Acceptance of a drafted block: pure tensor functions shared by every decode path.

Convention (the Orthrus paper, arXiv 2605.12825; docs/design.md): q = the diffusion view's (draft) distribution, p = the AR view's
(target) distribution. A block has B rows; row 0 holds the last committed token t, rows
1..B-1 hold the drafts d_1..d_{B-1}. The AR verify pass gives B target rows: row i is the
distribution of position L+i+1, so target row i checks draft d_{i+1} and target row B-1 is
only ever used for the bonus token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .sampling import (STREAM_ACCEPT, STREAM_DRAFT, STREAM_TOKEN, exponentials, filtered_probs, race, row_keys,
                       sample_keyed, uniforms)


def greedy_accept(draft_tokens: torch.Tensor, target_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Longest prefix of drafts equal to the AR argmax, and the bonus token after it.

    draft_tokens: long [bs, B-1]; target_tokens: long [bs, B] (AR argmax per block row).
    Returns (num_accepted long [bs] in 0..B-1, bonus long [bs] = target_tokens[n]).
    """
    matches = draft_tokens == target_tokens[:, :-1]
    num_accepted = matches.to(torch.int64).cumprod(dim=1).sum(dim=1)
    bonus = target_tokens.gather(1, num_accepted.unsqueeze(1)).squeeze(1)
    return num_accepted, bonus


def count_accepted(accepted: torch.Tensor) -> torch.Tensor:
    """Length of the all-True prefix of each row of accepted [bs, k] (long [bs])."""
    return accepted.to(torch.int64).cumprod(dim=1).sum(dim=1)


def residual_dist(p_n: torch.Tensor, q_n: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """The bonus distribution: norm(max(0, p_n - q_n)) on rows that rejected a draft, p_n on rows
    that accepted every draft (past the last draft there is no q). p_n, q_n: [bs, V]; rejected: bool [bs]."""
    residual = torch.where(rejected.view(-1, 1), (p_n - q_n).clamp_(min=0.0), p_n)
    mass = residual.sum(dim=-1, keepdim=True)
    # p == q on a row leaves no residual mass; a rejection is then impossible in exact
    # arithmetic, and rounding is resolved by falling back to p.
    return torch.where(mass > 1e-12, residual / mass.clamp(min=1e-30), p_n)


def rejected_onehot(draft_tokens: torch.Tensor, num_accepted: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """q_n of greedy drafts: one-hot [bs, V] at the draft rejected at row num_accepted (any row if none was)."""
    k = draft_tokens.shape[1]
    if not k:
        return torch.zeros_like(like)
    rejected_token = draft_tokens.gather(1, num_accepted.clamp(max=k - 1).unsqueeze(1))  # [bs, 1]
    return torch.zeros_like(like).scatter_(1, rejected_token, 1.0)


# ---- sampled drafts: q, sparse ------------------------------------------------------------------
# q keeps at most this many tokens per row: the top of the diffusion logits. Any q is lossless as
# long as acceptance uses the q the drafts were drawn from; a fixed small support makes q a
# fixed-shape [bs, k, C] tensor (CUDA graphs) instead of a dense [bs, k, V] one.
DRAFT_CANDIDATES = 64


@dataclass
class DraftDist:
    """q of sampled drafts, sparse: probs [bs, k, C] (float32, summing to 1) over the candidate
    token ids tokens [bs, k, C] (distinct per row). Tokens outside the candidates have q = 0."""

    probs: torch.Tensor
    tokens: torch.Tensor

    def at(self, draft_tokens: torch.Tensor) -> torch.Tensor:
        """q(d) for draft_tokens long [bs, k] -> [bs, k]."""
        return (self.probs * (self.tokens == draft_tokens.unsqueeze(-1))).sum(dim=-1)

    def dense_row(self, row: torch.Tensor, vocab: int) -> torch.Tensor:
        """q of block row ``row`` (long [bs], clamped to 0..k-1) as a dense [bs, V]."""
        bs, k, _ = self.probs.shape
        ar = torch.arange(bs, device=row.device)
        row = row.clamp(max=k - 1)
        dense = torch.zeros(bs, vocab, dtype=self.probs.dtype, device=self.probs.device)
        return dense.scatter_(1, self.tokens[ar, row], self.probs[ar, row])


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

    def probs(self, logits: torch.Tensor, bound: int | None = None) -> torch.Tensor:
        """Filtered probabilities [bs, T, V] of logits [bs, T, V] (greedy rows: their own params, unused).
        bound: the candidate bound when the last axis is not the vocabulary (default self.bound)."""
        return filtered_probs(logits, self.temperature.clamp(min=1e-5), self.top_k, self.top_p, self.min_p,
                              self.bound if bound is None else bound)

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
                 draft_dist: DraftDist | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept a drafted block for every request of a batch, greedy and sampled mixed.

    drafts: long [bs, B-1]; target_logits: [bs, B, V] (already biased/masked as AR would be);
    start_positions: int64 [bs], the position L of block row 0; draft_dist: the q the drafts were
    sampled from (sample_drafts: rejection sampling), or None: the drafts are deterministic (greedy
    argmax of the diffusion view) and sampled rows use target-only verification.
    Greedy rows: the longest prefix equal to the AR argmax, exactly as AR greedy decoding.
    Sampled rows: emitted tokens are distributed exactly as AR sampling from rows.probs(target).
    Uniforms and the bonus draw are keyed by (seed, position of the row, stream).
    Memory: p is never materialised for the whole block; p(d_i) is computed a few rows at a time and
    only the bonus row n gets a dense [bs, V] distribution.
    Returns (num_accepted long [bs] in 0..B-1, bonus long [bs]).
    """
    target_top1 = target_logits.argmax(dim=-1)
    num_accepted, bonus = greedy_accept(drafts, target_top1)
    if rows.all_greedy:
        return num_accepted, bonus
    bs, B, vocab = target_logits.shape
    k = B - 1
    start = start_positions.to(torch.int64)
    p_draft = _probs_at(target_logits[:, :k], rows, drafts)  # [bs, k]
    u = uniforms(row_keys(rows.seeds, start.view(bs, 1) + torch.arange(k, device=drafts.device), STREAM_ACCEPT))
    if draft_dist is None:  # greedy drafts: q is one-hot, min(1, p/q) = p(d)
        n = count_accepted(u < p_draft)
    else:
        n = count_accepted(u * draft_dist.at(drafts) < p_draft)
    ar = torch.arange(bs, device=drafts.device)
    p_n = rows.probs(target_logits[ar, n].unsqueeze(1)).squeeze(1)  # [bs, V]: target row n
    if draft_dist is None:
        q_n = rejected_onehot(drafts, n, p_n)
    else:
        q_n = draft_dist.dense_row(n, vocab) if k else torch.zeros_like(p_n)
    dist = residual_dist(p_n, q_n, n < k)
    # The bonus comes from target row n: its draw is keyed by that row's position, L + n.
    b = sample_keyed(dist.unsqueeze(1), row_keys(rows.seeds, (start + n).view(bs, 1), STREAM_TOKEN)).view(bs)
    sampled = ~rows.greedy
    return torch.where(sampled, n, num_accepted), torch.where(sampled, b, bonus)


# Elements of [rows, V] float32 work space that _probs_at filters at once (64 MB): bounds the
# acceptance's memory at any batch size (concurrency 64 x B=16 x 152k vocabulary would otherwise
# hold several 0.6 GB copies of p).
_CHUNK_ELEMENTS = 1 << 24


def _probs_at(logits: torch.Tensor, rows: RowSampling, tokens: torch.Tensor) -> torch.Tensor:
    """rows.probs(logits) at tokens: logits [bs, T, V], tokens long [bs, T] -> [bs, T], a few
    block rows at a time."""
    bs, T, vocab = logits.shape
    step = max(1, _CHUNK_ELEMENTS // max(bs * vocab, 1))
    parts = [rows.probs(logits[:, t : t + step]).gather(-1, tokens[:, t : t + step].unsqueeze(-1)).squeeze(-1)
             for t in range(0, T, step)]
    return torch.cat(parts, dim=1) if parts else tokens.new_zeros((bs, 0), dtype=torch.float32)


def sample_drafts(diffusion_logits: torch.Tensor, rows: RowSampling, start_positions: torch.Tensor,
                  candidates: int | None = None) -> tuple[torch.Tensor, DraftDist | None]:
    """Drafts from the diffusion view: (drafts long [bs, B-1], q or None when every row is greedy).

    diffusion_logits: [bs, B-1, V] of block rows 0..B-2 (row j predicts position L+j+1), any float
    dtype. Greedy rows take the argmax. Sampled rows draw from q: the request's temperature, top_k,
    top_p and min_p applied to the top ``candidates`` (DRAFT_CANDIDATES) diffusion logits, keyed by
    row position (stream STREAM_DRAFT) and token id, so the draw is the same as from q made dense.
    No host sync and fixed shapes: it runs inside a captured CUDA graph."""
    bs, k, vocab = diffusion_logits.shape
    top1 = diffusion_logits.argmax(dim=-1)
    if rows.all_greedy:
        return top1, None
    C = min(candidates or DRAFT_CANDIDATES, vocab)
    cand_logits, cand_tokens = diffusion_logits.topk(C, dim=-1)  # sorted, [bs, k, C]
    q = rows.probs(cand_logits.float(), bound=min(rows.bound, C))
    positions = start_positions.to(torch.int64).view(bs, 1) + torch.arange(k, device=diffusion_logits.device)
    exps = exponentials(row_keys(rows.seeds, positions, STREAM_DRAFT), cand_tokens)
    drawn = cand_tokens.gather(-1, race(q, exps).unsqueeze(-1)).squeeze(-1)
    return torch.where(rows.greedy.view(bs, 1), top1, drawn), DraftDist(q, cand_tokens)
