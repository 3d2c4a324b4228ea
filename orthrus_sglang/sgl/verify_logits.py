"""The per-request logit adjustments AR decoding applies before sampling, applied to every verify row.

A step verifies B positions of a request at once, so each of its B logits rows gets what SGLang's
sampler would add to that request's logits at one AR step: custom logit processors, penalties,
the grammar mask and logit_bias (SGLang's SamplingBatchInfo holds them). Penalties and custom
processors are refused at the API for ORTHRUS (hooks.refuse_unexact_sampling: applied once per
block they would not follow the AR distribution), so in practice this is logit_bias and grammar.
"""

from __future__ import annotations

import torch

from . import compat


def apply_to_verify_rows(logits: torch.Tensor, sampling_info, block_size: int) -> None:
    """In place on ``logits`` [bs*B, V] (request i's rows are i*B .. i*B+B-1)."""
    if sampling_info is None:
        return
    bs = len(sampling_info)
    if logits.ndim != 2 or logits.shape[0] != bs * block_size:
        raise ValueError(f"verify logits {tuple(logits.shape)} do not hold {bs} requests x {block_size} rows")
    if sampling_info.has_custom_logit_processor:
        compat.apply_custom_logit_processor(logits, sampling_info, num_tokens_in_batch=block_size)
    rows = logits.reshape(bs, block_size, -1)
    penalizer = getattr(sampling_info, "penalizer_orchestrator", None)
    if (penalizer is not None and penalizer.is_required) or getattr(sampling_info, "grammar_mask", None) is not None:
        # Everything the sampler would add, built once per request and broadcast over its block.
        bias = torch.zeros((bs, logits.shape[1]), dtype=torch.float32, device=logits.device)
        sampling_info.apply_logits_bias(bias)
        rows.add_(bias[:, None, :].to(dtype=logits.dtype))
        return
    logit_bias = getattr(sampling_info, "logit_bias", None)
    if logit_bias is not None:
        rows.add_(logit_bias.to(device=logits.device, dtype=logits.dtype)[:, None, :])
