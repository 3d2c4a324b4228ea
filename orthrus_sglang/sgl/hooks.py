"""The one SGLang behaviour ORTHRUS overrides, through SGLang's plugin hook API (no source patch).

SGLang 0.5.17's ``DecodeCudaGraphRunner.get_spec_info`` builds the verify input used while
capturing TARGET_VERIFY graphs only for its built-in algorithms and returns None for a plugin
algorithm. Backends that read ``spec_info.draft_token_num`` at capture time (triton's
deterministic/unified path, flashinfer's planner) then fail. For ORTHRUS we return what DFlash
gets: a linear verify input of the captured width with no custom mask (the block is a chain).
"""

from __future__ import annotations

TARGET = "sglang.srt.model_executor.runner.decode_cuda_graph_runner.DecodeCudaGraphRunner.get_spec_info"
_registered = False


def capture_spec_info(result, runner, num_tokens, *args, **kwargs):
    """AFTER hook: fill in the capture-time verify input SGLang leaves empty for ORTHRUS."""
    if result is not None or getattr(runner.model_runner.spec_algorithm, "name", None) != "ORTHRUS":
        return result
    from sglang.srt.model_executor.forward_batch_info import CaptureHiddenMode
    from sglang.srt.speculative.dflash_info import DFlashVerifyInput

    return DFlashVerifyInput(draft_token=None, positions=None, draft_token_num=runner.captured_req_width,
                             custom_mask=None, capture_hidden_mode=CaptureHiddenMode.NULL)


def register_hooks() -> None:
    global _registered
    if _registered:
        return
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    HookRegistry.register(TARGET, capture_spec_info, HookType.AFTER)
    _registered = True
