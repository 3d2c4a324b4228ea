"""SGLang behaviours ORTHRUS overrides, through SGLang's plugin hook API (no source patch).

1. The capture-time verify input (below). 2. The first token of an ORTHRUS request is drawn by
SGLang's sampler keyed by the request's seed, as every later token is (seeded_sample). 3. Requests
whose sampling parameters ORTHRUS cannot honour exactly are refused with a 400 naming the
parameter (refuse_unexact_sampling), instead of being decoded from another distribution.

SGLang's decode graph runner (compat.CAPTURE_SPEC_INFO_TARGET) builds the verify input used while
capturing TARGET_VERIFY graphs only for its built-in algorithms and returns None for a plugin
algorithm.
Backends that read ``spec_info.draft_token_num`` at capture time (triton's deterministic/unified
path, flashinfer's planner) then fail, and the model would not know where to write its drafts.
For ORTHRUS we return our chain verify input of the captured width, carrying the worker's
static step buffers, so the captured graph writes the drafts where the worker reads them.
"""

from __future__ import annotations

from . import compat

_registered = False


def capture_spec_info(result, runner, num_tokens, *args, **kwargs):
    """AFTER hook: fill in the capture-time verify input SGLang leaves empty for ORTHRUS."""
    if result is not None or getattr(runner.model_runner.spec_algorithm, "name", None) != "ORTHRUS":
        return result
    from . import step_buffers
    from .step_info import OrthrusVerifyInput

    return OrthrusVerifyInput(None, None, runner.captured_req_width, step_buffers.for_runner(runner.model_runner))


def seeded_sample(original, sampler, probs, sampling_info, positions, simple_sampling_case):
    """AROUND hook: for ORTHRUS prefill batches (the worker sets sampling_info.orthrus_rows), draw the
    first token with the same filtering and keyed randomness as the decode steps (accept.RowSampling)."""
    rows = getattr(sampling_info, "orthrus_rows", None)
    if rows is None or rows.all_greedy:
        return original(sampler, probs, sampling_info, positions, simple_sampling_case)
    import torch

    from ..sampling import STREAM_TOKEN, filtered_probs, row_keys, sample_keyed

    bs = probs.shape[0]
    ones = torch.ones(bs, device=probs.device)
    # probs are already softmax(logits / T): filter them (log, temperature 1) exactly as accept does.
    filtered = filtered_probs(probs.log().unsqueeze(1), ones, rows.top_k, rows.top_p, rows.min_p, rows.bound)
    tokens = sample_keyed(filtered, row_keys(rows.seeds, positions.to(torch.int64).view(bs, 1), STREAM_TOKEN))
    return compat.sampler_result(torch.where(rows.greedy, probs.argmax(dim=-1), tokens.view(bs)).to(torch.int32))


# Sampling parameters ORTHRUS cannot apply exactly -> the value that means "off". SGLang applies
# penalties once per verify block (the tokens accepted inside the block do not update them), so
# the output would not follow the AR distribution the request asked for.
UNEXACT_SAMPLING = {
    "frequency_penalty": 0.0, "presence_penalty": 0.0, "repetition_penalty": 1.0, "min_new_tokens": 0,
}


def unexact_sampling_problems(sampling_params) -> list[str]:
    return [f"{name}={getattr(sampling_params, name)!r}" for name, off in UNEXACT_SAMPLING.items()
            if getattr(sampling_params, name, off) not in (off, None)]


def refuse_unexact_sampling(result, manager, obj, *args, **kwargs):
    """AFTER hook on the tokenizer manager's per-request parse: a ValueError here is SGLang's 400."""
    if str(getattr(manager.server_args, "speculative_algorithm", None) or "").upper() != "ORTHRUS":
        return result
    sampling_params = getattr(result, "sampling_params", None)
    problems = unexact_sampling_problems(sampling_params) if sampling_params is not None else []
    if getattr(result, "custom_logit_processor", None):
        problems.append("custom_logit_processor")
    if problems:
        raise ValueError(f"ORTHRUS speculative decoding cannot apply {', '.join(problems)} exactly "
                         "(penalties would be applied once per drafted block, not per token); "
                         "send the request without them, or to a server without --speculative-algorithm ORTHRUS")
    return result


def register_hooks() -> None:
    global _registered
    if _registered:
        return
    hooks, kind = compat.HookRegistry, compat.HookType
    hooks.register(compat.CAPTURE_SPEC_INFO_TARGET, capture_spec_info, kind.AFTER)
    hooks.register(compat.SAMPLE_FROM_PROBS_TARGET, seeded_sample, kind.AROUND)
    hooks.register(compat.CREATE_TOKENIZED_OBJECT_TARGET, refuse_unexact_sampling, kind.AFTER)
    _registered = True
