"""The ORTHRUS decode step, one name per stage, called by both engines (docs/design.md, "The step"):

    make_block -> draft -> verify -> accept -> commit

- make_block: [t, MASK x (B-1)] per request, t = its last committed token, at positions L..L+B-1;
- draft: the diffusion view's non-causal pass over the block; its rows 0..B-2 give the drafts
  d_1..d_{B-1} (the argmax, or a keyed draw from q for sampled requests);
- verify: the AR view's causal pass over [t, d_1..d_{B-1}], writing their KV: B target rows. A
  forward pass, so each engine runs its own (the reference model; SGLang's TARGET_VERIFY);
- accept: the longest accepted prefix n and the bonus token (accept.accept_block);
- commit: the n accepted drafts and the bonus become the request's next n + 1 tokens.

orthrus_sglang/ref/engine.py:_orthrus_step and orthrus_sglang/sgl/worker.py:_decode are this
sequence; the SGLang model (sgl/models/orthrus.py) drafts inside the captured forward.
"""

from __future__ import annotations

import torch

from .accept import DraftDist, RowSampling, accept_block, sample_drafts


def make_block(last_tokens: torch.Tensor, block_size: int, mask_token_id: int) -> torch.Tensor:
    """long [bs, B]: row i = [last_tokens[i], MASK, ..., MASK]."""
    block = torch.full((last_tokens.numel(), block_size), mask_token_id, dtype=torch.int64, device=last_tokens.device)
    block[:, 0] = last_tokens.view(-1)
    return block


def draft(diffusion_logits: torch.Tensor, rows: RowSampling, start_positions: torch.Tensor
          ) -> tuple[torch.Tensor, DraftDist | None]:
    """Drafts [bs, B-1] from the diffusion view's logits over the whole block [bs, B, V] (row j predicts
    position L+j+1; the last row predicts past the block and is unused), and q when a row samples."""
    return sample_drafts(diffusion_logits[:, :-1], rows, start_positions)


def accept(drafts: torch.Tensor, target_logits: torch.Tensor, rows: RowSampling, start_positions: torch.Tensor,
           draft_dist: DraftDist | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(num_accepted [bs] in 0..B-1, bonus [bs]) from the verify pass's target rows [bs, B, V]."""
    return accept_block(drafts, target_logits, rows, start_positions, draft_dist)


def commit(drafts: torch.Tensor, num_accepted: torch.Tensor, bonus: torch.Tensor,
           out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The committed tokens as fixed-shape rows (tokens [bs, B], lengths [bs] = n + 1): row i holds
    d_1..d_n, then the bonus, then stale entries past lengths[i]. Fixed shapes so that SGLang's
    worker writes them into its output buffer inside a CUDA graph; the reference engine slices them."""
    bs, k = drafts.shape
    tokens = out if out is not None else drafts.new_empty((bs, k + 1))
    tokens[:, :k].copy_(drafts)
    tokens[:, k].zero_()
    tokens.scatter_(1, num_accepted.reshape(bs, 1), bonus.reshape(bs, 1).to(tokens.dtype))
    return tokens, num_accepted + 1
