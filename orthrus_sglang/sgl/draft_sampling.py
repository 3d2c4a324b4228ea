"""Static buffers for drafts sampled inside the captured step (--speculative-use-rejection-sampling).

A CUDA graph replays fixed addresses, so the sampling parameters of the batch and the q the
drafts were drawn from live in tensors allocated once, before capture, for the largest batch:
the worker copies each step's parameters in (device to device), the forward reads them and
writes q's candidates and probabilities back. Rows past the real batch (graph padding) hold
stale values that nobody reads. Eager steps use the same buffers, so both run the same code.
"""

from __future__ import annotations

import torch

from ..accept import DRAFT_CANDIDATES, DraftDist, RowSampling


class DraftSampling:
    def __init__(self, max_batch_size: int, block_size: int, vocab_size: int, device):
        n, k = max_batch_size, max(block_size - 1, 1)
        self.candidates = min(DRAFT_CANDIDATES, vocab_size)
        self.greedy = torch.ones(n, dtype=torch.bool, device=device)
        self.temperature = torch.ones(n, dtype=torch.float32, device=device)
        self.top_k = torch.zeros(n, dtype=torch.int64, device=device)
        self.top_p = torch.ones(n, dtype=torch.float32, device=device)
        self.min_p = torch.zeros(n, dtype=torch.float32, device=device)
        self.seeds = torch.zeros(n, dtype=torch.int64, device=device)
        self.q_probs = torch.zeros(n * k, self.candidates, dtype=torch.float32, device=device)
        self.q_tokens = torch.zeros(n * k, self.candidates, dtype=torch.int64, device=device)

    def load(self, rows: RowSampling | None, bs: int) -> None:
        """This step's parameters into rows 0..bs-1 (rows None: every request greedy)."""
        if rows is None:
            self.greedy[:bs].fill_(True)
            return
        for dst, src in ((self.greedy, rows.greedy), (self.temperature, rows.temperature), (self.top_k, rows.top_k),
                         (self.top_p, rows.top_p), (self.min_p, rows.min_p), (self.seeds, rows.seeds)):
            dst[:bs].copy_(src, non_blocking=True)

    def rows(self, bs: int) -> RowSampling:
        """The buffers as the RowSampling of a (possibly padded) batch of bs rows. The candidate
        bound is the candidate count: top-k/top-p never look past q's candidates."""
        return RowSampling(greedy=self.greedy[:bs], temperature=self.temperature[:bs], top_k=self.top_k[:bs],
                           top_p=self.top_p[:bs], min_p=self.min_p[:bs], seeds=self.seeds[:bs],
                           bound=self.candidates)

    def store(self, dist: DraftDist) -> None:
        """Called inside the forward: q of this step, [bs, k, C], into the static buffers."""
        rows = dist.probs.shape[0] * dist.probs.shape[1]
        self.q_probs[:rows].copy_(dist.probs.reshape(rows, -1))
        self.q_tokens[:rows].copy_(dist.tokens.reshape(rows, -1))

    def dist(self, bs: int, block_size: int) -> DraftDist:
        """q of the last step's first bs requests, [bs, B-1, C] views of the buffers."""
        k = block_size - 1
        return DraftDist(self.q_probs[: bs * k].view(bs, k, -1), self.q_tokens[: bs * k].view(bs, k, -1))
