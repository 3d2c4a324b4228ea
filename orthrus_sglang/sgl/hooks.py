"""SGLang behaviours ORTHRUS overrides, through SGLang's plugin hook API (no source patch).

1. The capture-time verify input (below). 2. The first token of an ORTHRUS request is drawn by
SGLang's sampler keyed by the request's seed, as every later token is (seeded_sample). 3. Requests
whose sampling parameters ORTHRUS cannot honour exactly are refused with a 400 naming the
parameter (refuse_unexact_sampling), instead of being decoded from another distribution.

SGLang 0.5.17's ``DecodeCudaGraphRunner.get_spec_info`` builds the verify input used while
capturing TARGET_VERIFY graphs only for its built-in algorithms and returns None for a plugin
algorithm. Backends that read ``spec_info.draft_token_num`` at capture time (triton's
deterministic/unified path, flashinfer's planner) then fail. For ORTHRUS we return what DFlash
gets: a linear verify input of the captured width with no custom mask (the block is a chain).
"""

from __future__ import annotations

TARGET = "sglang.srt.model_executor.runner.decode_cuda_graph_runner.DecodeCudaGraphRunner.get_spec_info"
SAMPLE_TARGET = "sglang.srt.layers.sampler.Sampler._sample_from_probs"
REQUEST_TARGET = "sglang.srt.managers.tokenizer_manager.TokenizerManager._create_tokenized_object"
_registered = False


def capture_spec_info(result, runner, num_tokens, *args, **kwargs):
    """AFTER hook: fill in the capture-time verify input SGLang leaves empty for ORTHRUS."""
    if result is not None or getattr(runner.model_runner.spec_algorithm, "name", None) != "ORTHRUS":
        return result
    from sglang.srt.model_executor.forward_batch_info import CaptureHiddenMode
    from sglang.srt.speculative.dflash_info import DFlashVerifyInput

    return DFlashVerifyInput(draft_token=None, positions=None, draft_token_num=runner.captured_req_width,
                             custom_mask=None, capture_hidden_mode=CaptureHiddenMode.NULL)


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
    return torch.where(rows.greedy, probs.argmax(dim=-1), tokens.view(bs)).to(torch.int32)


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
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    HookRegistry.register(TARGET, capture_spec_info, HookType.AFTER)
    HookRegistry.register(SAMPLE_TARGET, seeded_sample, HookType.AROUND)
    HookRegistry.register(REQUEST_TARGET, refuse_unexact_sampling, HookType.AFTER)
    _registered = True
