"""Pure-Python stand-in for ``sgl_kernel``, so real SGLang 0.5.17 runs on a CPU-only CI machine.

Why this exists: SGLang's kernel package (``sglang-kernel`` on PyPI, import name ``sgl_kernel``)
ships only CUDA builds, which cannot load without libcuda, and there is no CPU build on PyPI.
With ``SGLANG_USE_CPU_ENGINE=1`` SGLang still does ``from sgl_kernel import <name>_cpu`` at module
import time in a handful of modules (each under ``if _is_cpu:``), so without *some* ``sgl_kernel``
the engine does not even import. On the ``torch_native`` attention path a Qwen3 / Llama model
calls none of them during plain prefill/decode; speculative decoding's slot allocation
(``mem_cache/allocation.py: alloc_for_spec_decode -> assign_req_to_token_pool_func``) calls
``assign_req_to_token_pool_cpu``, which is implemented here in torch. Everything else raises
NotImplementedError when called, so a path that would need a real kernel fails loudly.

Deliberately NOT provided (SGLang probes them inside try/except and falls back when missing;
providing them would switch on kernel paths): ``sgl_kernel.scalar_type``, ``gptq_gemm``,
``gptq_shuffle``, ``rmsnorm``, ``causal_conv1d_fwd``, ``sgl_kernel.allreduce``. We also register no
``torch.ops.sgl_kernel.*`` ops: SGLang's CPU fast paths (``cpu_has_amx_support()``) are keyed on
``torch.ops.sgl_kernel.convert_weight_packed`` and must stay off so the pure-torch paths run.

The names below were found by grepping the installed sglang 0.5.17 for ``from sgl_kernel`` /
``import sgl_kernel`` (module-level imports under ``if _is_cpu``) and by running ``sglang.Engine``.
Installed by scripts/install_sglang_cpu.sh; background in docs/design.md ("SGLang on a CPU machine").
sglang 0.5.23 imports the same names on the CPU path (checked with tests/sgl on 0.5.23).
"""

__version__ = "0.0.1+cpu.stand.in"


def _unavailable(name: str):
    def kernel(*args, **kwargs):
        raise NotImplementedError(f"sgl_kernel.{name} is not available on CPU (sgl_kernel CPU stand-in)")

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = f"Placeholder for sgl_kernel.{name}: raises NotImplementedError (no CPU kernel)."
    return kernel


def assign_req_to_token_pool_cpu(req_pool_indices, req_to_token, start_offset, end_offset, out_cache_loc,
                                 pool_len=None):
    """Torch version of SGLang's ``assign_req_to_token_pool`` kernel (mem_cache/allocation.py).

    For each request i (in batch order), writes the next ``end_offset[i] - start_offset[i]`` entries of
    the flat ``out_cache_loc`` into ``req_to_token[req_pool_indices[i], start_offset[i]:end_offset[i]]``.
    ``pool_len`` (= ``req_to_token.shape[1]``) is accepted for signature compatibility only.
    """
    rows = req_pool_indices.tolist()
    starts = start_offset.tolist()
    ends = end_offset.tolist()
    pt = 0
    for row, start, end in zip(rows, starts, ends):
        n = end - start
        if n > 0:
            req_to_token[row, start:end] = out_cache_loc[pt:pt + n].to(req_to_token.dtype)
        pt += n


def copy_all_layer_kv_cache_cpu(data_ptrs, strides, tgt_loc, src_loc):
    """Torch/ctypes version of SGLang's all-layer KV row copy (kernels/ops/kvcache/cache_move.py).

    ``data_ptrs[i]`` is the base address of the i-th K or V buffer (one per layer), ``strides[i]`` its
    row size in bytes; row ``src_loc[j]`` is copied onto row ``tgt_loc[j]`` in every buffer. SGLang
    calls it once at pool creation (a warm-up with one dummy row) whenever a speculative algorithm
    is on; the buffers are CPU tensors here, so a byte copy is exact.
    """
    import ctypes

    for ptr, stride in zip(data_ptrs.tolist(), strides.tolist()):
        for tgt, src in zip(tgt_loc.tolist(), src_loc.tolist()):
            if tgt != src:
                ctypes.memmove(ptr + tgt * stride, ptr + src * stride, stride)


# Imported at module level under `if _is_cpu:` by sglang 0.5.17 (file: the importer), never called on
# the plain torch_native Qwen3/Llama path.
assign_extend_cache_locs_cpu = _unavailable("assign_extend_cache_locs_cpu")  # kernels/ops/speculative/cache_locs.py, srt/speculative/spec_utils.py
fill_accept_out_cache_loc_cpu = _unavailable("fill_accept_out_cache_loc_cpu")  # kernels/ops/speculative/eagle.py
fill_bonus_tokens_cpu = _unavailable("fill_bonus_tokens_cpu")  # kernels/ops/speculative/eagle.py
build_tree_kernel_efficient_cpu = _unavailable("build_tree_kernel_efficient_cpu")  # srt/speculative/eagle_utils.py
verify_tree_greedy_cpu = _unavailable("verify_tree_greedy_cpu")  # srt/speculative/eagle_utils.py
assign_draft_cache_locs_contiguous_cpu = _unavailable("assign_draft_cache_locs_contiguous_cpu")  # srt/speculative/eagle_worker_common.py
rotate_input_ids_cpu = _unavailable("rotate_input_ids_cpu")  # kernels/ops/speculative/multi_layer_eagle.py

__all__ = [
    "assign_req_to_token_pool_cpu",
    "copy_all_layer_kv_cache_cpu",
    "assign_extend_cache_locs_cpu",
    "fill_accept_out_cache_loc_cpu",
    "fill_bonus_tokens_cpu",
    "build_tree_kernel_efficient_cpu",
    "verify_tree_greedy_cpu",
    "assign_draft_cache_locs_contiguous_cpu",
    "rotate_input_ids_cpu",
]
