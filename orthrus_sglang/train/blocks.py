"""Training blocks: where the diffusion view drafts, what it sees, what it must predict.

For an anchor a (a position of an answer token), inference's draft step sees the AR K/V of
the document's tokens before a, plus the block ``[x_a, MASK x (B-1)]`` at positions a..a+B-1,
non-causally; block row i drafts the token at a+i+1. Training packs N such blocks per row into
one diffusion stream of N*B tokens and lets each block see exactly that: AR keys
doc_start..a-1 of its own document and the B keys of its own block. Row i's target is the AR
prediction at a+i (the frozen model's next-token distribution), for i = 0..B-2 while a+i+1
is still inside the document.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import Rows


@dataclass
class Blocks:
    """N blocks of size B per row. Shapes: [R, N] per block, [R, N*B] per stream token, [R, N, B-1] per draft."""

    block_size: int
    anchors: torch.Tensor  # long [R, N]: the block's first position (row index)
    starts: torch.Tensor  # long [R, N]: where the anchor's document starts
    ids: torch.Tensor  # long [R, N*B]: x_a, MASK, ..., MASK
    positions: torch.Tensor  # long [R, N*B]: document positions a..a+B-1
    target_rows: torch.Tensor  # long [R, N, B-1]: row index a+i of the AR logits draft i+1 learns
    target_valid: torch.Tensor  # bool [R, N, B-1]

    @property
    def num_blocks(self) -> int:
        return self.anchors.shape[1]

    def to(self, device) -> "Blocks":
        return Blocks(self.block_size, *(getattr(self, f).to(device) for f in
                                         ("anchors", "starts", "ids", "positions", "target_rows", "target_valid")))


def sample_anchors(anchor_ok: torch.Tensor, num_blocks: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """num_blocks distinct anchors per row where possible (repeats when a row has fewer), sorted.

    anchor_ok: bool [R, T] (CPU). Returns anchors long [R, N] and block_ok bool [R, N]
    (False only for a row with no anchor at all).
    """
    R = anchor_ok.shape[0]
    anchors = torch.zeros(R, num_blocks, dtype=torch.long)
    block_ok = torch.zeros(R, num_blocks, dtype=torch.bool)
    for r in range(R):
        candidates = anchor_ok[r].nonzero().flatten()
        if len(candidates) == 0:
            continue
        if len(candidates) >= num_blocks:
            pick = torch.randperm(len(candidates), generator=generator)[:num_blocks]
        else:
            pick = torch.randint(len(candidates), (num_blocks,), generator=generator)
        anchors[r] = candidates[pick].sort().values
        block_ok[r] = True
    return anchors, block_ok


def make_blocks(rows: Rows, anchors: torch.Tensor, block_ok: torch.Tensor, *, block_size: int,
                mask_token_id: int) -> Blocks:
    """The diffusion stream for the given anchors (long [R, N]) of rows (all on one device)."""
    R, N = anchors.shape
    B = block_size
    offsets = torch.arange(B, device=anchors.device)
    gather = lambda t: t.gather(1, anchors)  # noqa: E731  [R, T] -> [R, N]
    ids = torch.full((R, N, B), mask_token_id, dtype=torch.long, device=anchors.device)
    ids[:, :, 0] = gather(rows.ids)
    positions = gather(rows.positions).unsqueeze(-1) + offsets  # [R, N, B]
    target_rows = anchors.unsqueeze(-1) + offsets[:-1]  # [R, N, B-1]
    target_valid = (target_rows + 1 < gather(rows.doc_end).unsqueeze(-1)) & block_ok.unsqueeze(-1)
    T = rows.ids.shape[1]
    return Blocks(B, anchors, gather(rows.doc_start), ids.view(R, N * B), positions.view(R, N * B),
                  target_rows.clamp(max=T - 1), target_valid)


def sample_blocks(rows: Rows, *, block_size: int, num_blocks: int, mask_token_id: int,
                  generator: torch.Generator) -> Blocks:
    anchors, block_ok = sample_anchors(rows.anchor_ok.cpu(), num_blocks, generator)
    device = rows.ids.device
    return make_blocks(rows, anchors.to(device), block_ok.to(device), block_size=block_size,
                       mask_token_id=mask_token_id)


# ---- who attends to whom ----------------------------------------------------------------
# Both rules are written once as index predicates, used by the dense (SDPA) masks below and
# by flex_attention's mask_mod (attention.py), so the two paths cannot drift apart.

def ar_allowed(doc_start_of_q: torch.Tensor, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    """Causal inside the query's document."""
    return (kv <= q) & (kv >= doc_start_of_q)


def diff_allowed(start_of_q, anchor_of_q, q, kv, *, row_len: int, block_size: int) -> torch.Tensor:
    """Keys 0..T-1 are AR keys of the row, keys T.. the diffusion stream's own keys."""
    sees_prefix = (kv >= start_of_q) & (kv < anchor_of_q)
    same_block = (kv - row_len) // block_size == q // block_size
    return torch.where(kv < row_len, sees_prefix, same_block)


def ar_mask_dense(rows: Rows) -> torch.Tensor:
    """bool [R, T, T]."""
    T = rows.ids.shape[1]
    q = torch.arange(T, device=rows.ids.device).view(1, T, 1)
    kv = torch.arange(T, device=rows.ids.device).view(1, 1, T)
    return ar_allowed(rows.doc_start.unsqueeze(-1), q, kv)


def diff_mask_dense(blocks: Blocks, row_len: int) -> torch.Tensor:
    """bool [R, N*B, T + N*B]."""
    B = blocks.block_size
    NB = blocks.ids.shape[1]
    device = blocks.ids.device
    q = torch.arange(NB, device=device).view(1, NB, 1)
    kv = torch.arange(row_len + NB, device=device).view(1, 1, -1)
    per_query = lambda t: t.repeat_interleave(B, dim=1).unsqueeze(-1)  # noqa: E731  [R, N] -> [R, NB, 1]
    return diff_allowed(per_query(blocks.starts), per_query(blocks.anchors), q, kv, row_len=row_len, block_size=B)
