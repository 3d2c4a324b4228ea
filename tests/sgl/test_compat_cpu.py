"""orthrus_sglang/sgl/compat.py against the installed SGLang: every name and hook target resolves.

The engine tests run the step end to end; this catches a moved or renamed SGLang symbol by name,
including those only GPU paths use (CUDA-graph capture, flashinfer planning, fp32 fused ops).
"""

from __future__ import annotations

import pkgutil

import pytest
import sglang  # noqa: F401  (after sgl_engine, via conftest: SGLANG_USE_CPU_ENGINE is set)

from orthrus_sglang.sgl import compat


@pytest.mark.parametrize("name", sorted(compat._NAMES))
def test_every_sglang_name_resolves(name):
    assert getattr(compat, name) is not None


def test_draft_weight_kernels_are_cuda_only():
    """On a CPU every draft-weight kind runs its emulation: compat offers no kernels."""
    assert [compat.draft_kernels(kind, "cpu") for kind in ("bf16", "fp8", "int4")] == [None, None, None]


@pytest.mark.parametrize("target", [compat.CAPTURE_SPEC_INFO_TARGET, compat.SAMPLE_FROM_PROBS_TARGET,
                                    compat.CREATE_TOKENIZED_OBJECT_TARGET])
def test_every_hooked_method_exists(target):
    assert callable(pkgutil.resolve_name(target))


def test_step_input_tags_are_a_verify_and_a_draft_input():
    import torch

    from orthrus_sglang.sgl.step_buffers import StepBuffers
    from orthrus_sglang.sgl.step_info import OrthrusDraftInput, OrthrusVerifyInput

    verify = OrthrusVerifyInput(None, None, 4, StepBuffers.allocate(2, 4, 16, "cpu", sampled_drafts=False))
    assert verify.is_verify_input() and not verify.is_draft_input()
    assert (verify.draft_token_num, verify.num_tokens_per_req, verify.topk, verify.custom_mask) == (4, 4, 1, None)
    draft = OrthrusDraftInput(torch.tensor([7, 8]), torch.tensor([3, 5]))
    assert draft.is_draft_input() and not draft.is_verify_input()


def test_version_helpers_answer_on_this_sglang():
    assert compat.simulated_commit_len(4) is None  # the benchmark switch is off
    assert isinstance(compat.attention_tp_linear_kwargs, object)
    import torch

    ids = torch.tensor([1, 2])
    result = compat.sampler_result(ids)
    assert result is ids or (result[0] is ids and result[1] is None)


def test_per_block_size_graphs_have_what_they_need():
    """compat.verify_graphs_for_block_size (GPU only) builds a backend and a graph runner per block size the
    way SGLang's adaptive EAGLE does: the private builder, the runner's keywords and the context override."""
    import inspect

    from sglang.srt.model_executor.model_runner import ModelRunner
    from sglang.srt.model_executor.runner.decode_cuda_graph_runner import DecodeCudaGraphRunner

    assert "init_new_workspace" in inspect.signature(ModelRunner._get_attention_backend).parameters
    assert {"attn_backend", "speculative_num_draft_tokens"} <= set(inspect.signature(DecodeCudaGraphRunner).parameters)
    assert "source" in inspect.signature(type(compat.runtime_context()).override).parameters


def test_fused_ops_run_natively():
    """compat.run_fused_ops_natively (the fp32 CUDA path) pins SGLang's fused ops to forward_native."""
    import torch

    rms = compat.RMSNorm(8, eps=1e-6)
    model = torch.nn.Sequential(rms, torch.nn.Linear(8, 8))
    compat.run_fused_ops_natively(model)
    assert isinstance(rms, compat.FUSED_OP_BASE) and rms._forward_method == rms.forward_native
    x = torch.randn(3, 8)
    torch.testing.assert_close(rms(x), rms.forward_native(x))


def test_orthrus_future_map_resolves_without_a_host_wait():
    """sgl/future_map.py on this SGLang's FutureMap: device lengths exact, host lengths an upper bound,
    the publish waited on (device side) and marked consumed (compat.wait_for_published_lens)."""
    from types import SimpleNamespace

    import torch

    from orthrus_sglang.sgl.future_map import OrthrusFutureMap

    pool = SimpleNamespace(req_to_token=torch.zeros((8, 64), dtype=torch.int32))
    fmap = OrthrusFutureMap(torch.device("cpu"), None, pool, True, False, block_size=4)
    fmap.new_seq_lens_buf[:] = torch.arange(8) * 10
    waited = []
    fmap.publish_ready = SimpleNamespace(wait=lambda: waited.append(True))
    fmap._publish_fresh = True
    reqs = [SimpleNamespace(kv=SimpleNamespace(kv_allocated_len=n)) for n in (30, 2)]
    batch = SimpleNamespace(spec_info=SimpleNamespace(future_indices=torch.tensor([3, 1])), reqs=reqs)
    fmap.resolve_seq_lens_cpu(batch)
    assert batch.seq_lens.tolist() == [30, 10]
    assert batch.seq_lens_cpu.tolist() == [26, 0] and batch.seq_lens_sum == 26
    assert waited == [True] and fmap._publish_fresh is False
