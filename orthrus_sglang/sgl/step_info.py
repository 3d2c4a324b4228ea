"""What an ORTHRUS step hands SGLang and the next step (SGLang's ``<algo>_info.py`` split).

- ``OrthrusVerifyInput``: the spec_info of the one TARGET_VERIFY forward of a step. It carries
  the block ``[t, MASK x (B-1)]`` and the worker's ``StepBuffers`` (where the model writes the
  drafts), and plans the forward's attention the way SGLang plans any chain verify.
- ``OrthrusDraftInput``: what a step relays to the next through SGLang's spec-v2 scheduler
  (FutureMap): each request's bonus token and committed length.
"""

from __future__ import annotations

import torch

from . import compat
from .step_buffers import StepBuffers


class OrthrusVerifyInput(compat.SpecInput):
    """A chain verify of B tokens per request: no tree, no custom mask, no hidden-state capture."""

    topk = 1  # backends gate tree metadata on topk > 1
    custom_mask = None  # the block is a chain: every backend's causal TARGET_VERIFY path

    def __init__(self, block_ids: torch.Tensor | None, positions: torch.Tensor | None, block_size: int,
                 buffers: StepBuffers):
        super().__init__(compat.chain_verify_input_type())
        self.draft_token = block_ids  # SGLang's name for the verify forward's input ids
        self.positions = positions
        self.draft_token_num = int(block_size)
        self.buffers = buffers
        self.capture_hidden_mode = compat.CaptureHiddenMode.NULL
        self.num_tokens_per_req = self.num_tokens_for_logprob_per_req = int(block_size)

    def prepare_for_verify(self, batch, target_worker, plan_attention: bool = True):
        """The step's TARGET_VERIFY ForwardBatch (batch.out_cache_loc already set), its attention
        planned (CUDA-graph buffers loaded, or eager metadata), so the forward does not plan again.
        plan_attention=False: block_attention serves the step and the backend is not planned."""
        batch.input_ids = self.draft_token
        batch.spec_info = self
        batch.forward_mode = compat.ForwardMode.IDLE if batch.forward_mode.is_idle() else compat.ForwardMode.TARGET_VERIFY
        return compat.plan_verify_forward(batch, target_worker.model_runner, self.capture_hidden_mode,
                                          plan_attention)

    def generate_attn_arg_prefill(self, *args, **kwargs):
        """flashinfer's planner arguments for this verify (called by flashinfer only)."""
        return compat.chain_verify_attn_args(self.draft_token_num, *args, **kwargs)


class OrthrusDraftInput(compat.SpecInput):
    """Per request: the bonus token the next block starts with and the committed KV length."""

    def __init__(self, bonus_tokens: torch.Tensor, new_seq_lens: torch.Tensor):
        super().__init__(compat.chain_draft_input_type())
        bs, device = int(new_seq_lens.numel()), bonus_tokens.device
        self.bonus_tokens = bonus_tokens.to(dtype=torch.int64)
        self.new_seq_lens = new_seq_lens.to(dtype=torch.int64)
        # EAGLE-shaped fields SGLang's relay and batch padding read from every draft input: empty.
        self.topk_p = torch.empty((bs, 0), device=device, dtype=torch.float32)
        self.topk_index = torch.empty((bs, 0), device=device, dtype=torch.int64)
        self.hidden_states = torch.empty((bs, 0), device=device, dtype=torch.float16)
        self.future_indices: torch.Tensor | None = None  # set by the scheduler after dispatch (overlap)
        self.num_tokens_per_req = self.num_tokens_for_logprob_per_req = 1

    @classmethod
    def empty(cls, device) -> "OrthrusDraftInput":
        none = torch.empty((0,), dtype=torch.int64, device=device)
        return cls(bonus_tokens=none, new_seq_lens=none)

    def _rows(self) -> tuple[str, ...]:
        return ("topk_p", "topk_index", "bonus_tokens", "new_seq_lens", "hidden_states")

    def filter_batch(self, new_indices: torch.Tensor, new_indices_cpu=None) -> None:
        """The scheduler dropped finished requests: keep rows ``new_indices``."""
        if self.future_indices is not None:  # overlap: the values live in the FutureMap
            self.future_indices = self.future_indices[new_indices]
            return
        for name in self._rows():
            setattr(self, name, getattr(self, name)[new_indices])

    def merge_batch(self, other: "OrthrusDraftInput") -> None:
        """The scheduler appended ``other``'s requests to this batch."""
        if self.future_indices is not None:
            assert other.future_indices is not None
            self.future_indices = torch.cat([self.future_indices, other.future_indices])
            return
        for name in self._rows():
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)], dim=0))
