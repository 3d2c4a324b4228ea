"""The loss on the drafts and the live draft-accuracy figures.

Draft i+1 of a block (block row i) learns the frozen AR view's next-token distribution p at
row position a+i, i.e. exactly the token the verify pass would accept there:
  - ``kl``: forward KL(p || q) over the whole vocabulary (the published recipe);
  - ``ce``: cross-entropy on argmax p (the greedy verifier only ever checks the argmax).
``decay`` > 0 weights draft k by exp(-(k-1)/decay): a draft only counts if every draft before
it was accepted, so early positions matter more (DFlash's weighting); 0 weights all alike.

Because the data are the model's own greedy answers and the block input does not depend on
earlier drafts, a block's count n of leading correct drafts is exactly what a greedy decode
step anchored there would accept. Decoding does not visit anchors uniformly, though: a step
that accepts n drafts skips the next n anchors, so easy stretches take few steps. Weighting
each token by 1/(n+1) undoes that: ``tau_estimate`` = 1 / mean(1 / (n + 1)) over random
anchors (exact when n changes slowly along the text; the arithmetic mean overstates tau).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .blocks import Blocks
from .config import LOSSES



def position_weights(block_size: int, decay: float, device=None) -> torch.Tensor:
    """float [B-1]: weight of draft k = 1..B-1."""
    k = torch.arange(block_size - 1, device=device, dtype=torch.float32)
    return torch.exp(-k / decay) if decay > 0 else torch.ones_like(k)


@dataclass
class DraftStats:
    """Counts summed over micro-batches; ``add`` merges two."""

    block_size: int
    loss_sum: float = 0.0
    num_losses: int = 0
    correct: list[int] = field(default_factory=list)  # per draft position
    valid: list[int] = field(default_factory=list)
    inverse_step_sum: float = 0.0  # sum over whole blocks of 1 / (leading correct drafts + 1)
    num_blocks: int = 0

    def __post_init__(self):
        self.correct = self.correct or [0] * (self.block_size - 1)
        self.valid = self.valid or [0] * (self.block_size - 1)

    def add(self, other: "DraftStats") -> None:
        self.loss_sum += other.loss_sum
        self.num_losses += other.num_losses
        self.correct = [a + b for a, b in zip(self.correct, other.correct)]
        self.valid = [a + b for a, b in zip(self.valid, other.valid)]
        self.inverse_step_sum += other.inverse_step_sum
        self.num_blocks += other.num_blocks

    @property
    def loss(self) -> float:
        return self.loss_sum / self.num_losses if self.num_losses else math.nan

    @property
    def accuracy(self) -> float:
        """Fraction of drafts equal to the AR argmax, all positions together."""
        return sum(self.correct) / max(sum(self.valid), 1)

    @property
    def accuracy_per_position(self) -> list[float]:
        return [c / v if v else math.nan for c, v in zip(self.correct, self.valid)]

    @property
    def tau_estimate(self) -> float:
        return self.num_blocks / self.inverse_step_sum if self.num_blocks else math.nan


def draft_loss(lm_head: torch.nn.Module, teacher_hidden: torch.Tensor, draft_hidden: torch.Tensor, blocks: Blocks,
               *, loss: str, decay: float) -> tuple[torch.Tensor, DraftStats]:
    """teacher_hidden [R, T, H] (no grad), draft_hidden [R, N*B, H]. Returns the weighted mean loss and stats."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    R, N, K = blocks.target_rows.shape  # K = B-1 drafts per block
    H = teacher_hidden.shape[-1]
    valid = blocks.target_valid  # [R, N, K]
    teacher_rows = teacher_hidden.gather(1, blocks.target_rows.view(R, N * K, 1).expand(-1, -1, H)).view(R, N, K, H)
    draft_rows = draft_hidden.view(R, N, K + 1, H)[:, :, :K]  # the last block row drafts nothing
    with torch.no_grad():
        p_logits = lm_head(teacher_rows[valid]).float()  # [M, V]
    q_logits = lm_head(draft_rows[valid]).float()
    weights = position_weights(K + 1, decay, device=q_logits.device).expand(R, N, K)[valid]
    if loss == "kl":
        p_log = F.log_softmax(p_logits, dim=-1)
        per_draft = (p_log.exp() * (p_log - F.log_softmax(q_logits, dim=-1))).sum(-1)
    else:
        per_draft = F.cross_entropy(q_logits, p_logits.argmax(-1), reduction="none")
    value = (weights * per_draft).sum() / weights.sum().clamp_min(1e-8)
    return value, _stats(blocks, valid, q_logits.detach().argmax(-1) == p_logits.argmax(-1), value.detach(),
                         per_draft.numel())


def _stats(blocks: Blocks, valid: torch.Tensor, hits: torch.Tensor, value: torch.Tensor, num: int) -> DraftStats:
    correct = torch.zeros_like(valid)
    correct[valid] = hits
    whole = valid.all(-1)  # blocks whose every draft lies inside the document
    leading = correct[whole].int().cumprod(-1).sum(-1)
    return DraftStats(blocks.block_size, loss_sum=float(value) * num, num_losses=num,
                      correct=correct.sum((0, 1)).tolist(), valid=valid.sum((0, 1)).tolist(),
                      inverse_step_sum=float((1.0 / (leading + 1)).sum()), num_blocks=int(whole.sum()))
