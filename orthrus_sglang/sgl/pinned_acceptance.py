"""SGLang's pinned-acceptance benchmark switch (SGLANG_SIMULATE_ACC_LEN) for ORTHRUS steps.

With it on, every request commits the same number of tokens per step whatever the model
accepted, so throughput can be measured at a chosen tau (bench/throughput.py --simulate-tau).
The rule is the one SGLang's DFLASH worker applies: in 'fixed' token mode every committed token
is ``FIXED_TOKEN_ID``; in 'real-draft-token' mode the drafts and the AR argmax after them.
"""

from __future__ import annotations

import torch

FIXED_TOKEN_ID = 100


def pin_commit_length(commit_len: int, *, candidates: torch.Tensor, target_top1: torch.Tensor, real_drafts: bool,
                      accept_len: torch.Tensor, commit_lens: torch.Tensor, bonus: torch.Tensor,
                      out_tokens: torch.Tensor) -> None:
    """Overwrite the step's outputs in place so every request commits ``commit_len`` tokens
    (``candidates`` [bs, B] = t, d_1..d_{B-1}; ``target_top1`` [bs, B] the AR argmax)."""
    accepted = commit_len - 1
    accept_len.fill_(accepted)
    commit_lens.fill_(commit_len)
    if not real_drafts:
        bonus.fill_(FIXED_TOKEN_ID)
        out_tokens.fill_(FIXED_TOKEN_ID)
        return
    out_tokens.zero_()
    if accepted > 0:
        out_tokens[:, :accepted].copy_(candidates[:, 1:commit_len])
    bonus.copy_(target_top1[:, accepted].to(dtype=bonus.dtype))
    out_tokens[:, accepted].copy_(bonus.to(dtype=out_tokens.dtype))
