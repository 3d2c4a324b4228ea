"""The static tensors one ORTHRUS step's forward writes into and the worker reads back.

A CUDA graph replays fixed addresses, so the drafts (and, for sampled drafts, the sampling
parameters and q) live in buffers the worker allocates once, before capture, for its largest
batch. They reach the model through the step's verify input (``forward_batch.spec_info``):
the worker's own input while eager, and the input the capture hook builds while SGLang
captures the graphs, which looks the worker's buffers up here by model runner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .draft_sampling import DraftSampling


@dataclass
class StepBuffers:
    draft_ids: torch.Tensor  # [max_bs * (B-1)]: the step's drafts, row i of a request predicts L+i+1
    sampling: DraftSampling | None = None  # sampled drafts (--speculative-use-rejection-sampling), else None

    @classmethod
    def allocate(cls, max_batch_size: int, block_size: int, vocab_size: int, device,
                 sampled_drafts: bool) -> "StepBuffers":
        draft_ids = torch.zeros(max_batch_size * max(block_size - 1, 1), dtype=torch.int64, device=device)
        sampling = DraftSampling(max_batch_size, block_size, vocab_size, device) if sampled_drafts else None
        return cls(draft_ids, sampling)

    def drafts(self, bs: int, block_size: int) -> torch.Tensor:
        """The last step's drafts of its first bs requests, [bs, B-1]."""
        return self.draft_ids[: bs * (block_size - 1)].view(bs, block_size - 1)


# model runner -> the buffers of the worker that drives it (one per scheduler process in practice).
_BY_RUNNER: dict[int, StepBuffers] = {}


def register(model_runner, buffers: StepBuffers) -> None:
    _BY_RUNNER[id(model_runner)] = buffers


def for_runner(model_runner) -> StepBuffers:
    buffers = _BY_RUNNER.get(id(model_runner))
    if buffers is None:
        raise RuntimeError("ORTHRUS: no step buffers for this model runner; the OrthrusWorker allocates them "
                           "before SGLang captures the TARGET_VERIFY CUDA graphs")
    return buffers
