"""Draft accuracy on given documents, without training: the same blocks and metric as a training step."""

from __future__ import annotations

import torch

from .attention import DenseAttention
from .blocks import sample_blocks
from .data import Document, pack
from .forward import draft_pass, teacher_pass
from .objective import DraftStats, draft_loss


@torch.no_grad()
def draft_stats(model, docs: list[Document], *, block_size: int, row_len: int, pad_id: int, seed: int = 0,
                rows_per_batch: int = 4, attention=None) -> DraftStats:
    """Per-position draft accuracy and the tau estimate over every packed row of ``docs`` (fixed anchors)."""
    attention = attention or DenseAttention(torch.float32)
    rows_all = pack(docs, row_len, pad_id)
    generator = torch.Generator().manual_seed(seed)
    total = DraftStats(block_size)
    for first in range(0, rows_all.ids.shape[0], rows_per_batch):
        rows = type(rows_all)(*(t[first:first + rows_per_batch] for t in
                                (rows_all.ids, rows_all.positions, rows_all.doc_start, rows_all.doc_end,
                                 rows_all.anchor_ok))).to(model.device)
        blocks = sample_blocks(rows, block_size=block_size, num_blocks=row_len // block_size,
                               mask_token_id=model.config.mask_token_id, generator=generator)
        ar_kv, teacher_hidden = teacher_pass(model, rows, attention)
        hidden = draft_pass(model, blocks, ar_kv, attention, row_len=row_len)
        total.add(draft_loss(model.lm_head, teacher_hidden, hidden, blocks, loss="kl", decay=0.0)[1])
    return total
