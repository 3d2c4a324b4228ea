"""The one seam between ORTHRUS and SGLang's internals.

Every ``sglang.srt.*`` / ``sglang.kernels.*`` name the plugin uses, every private SGLang method it
hooks by name, and every difference between SGLang releases lives here; the rest of
``orthrus_sglang`` imports from this module. Public ``sglang.*`` (``sglang.Engine``,
``sglang.bench_serving``) is used directly elsewhere. docs/design.md lists the hook points.

Names are resolved lazily, on first use (``from .compat import X`` imports only X's SGLang
module): SGLang loads the plugin in every process before it sets up prometheus and CUDA, so
importing this module must import no SGLang module at all.

Checked against SGLang 0.5.17 (CPU tests + GPU host) and 0.5.23 (CPU tests). What changed
between them that matters to us:

=============================  ===========================================  ==================
symbol / helper                0.5.17                                       0.5.23
=============================  ===========================================  ==================
``FUSED_OP_BASE``              ``layers.utils.MultiPlatformOp``             ``kernels.fused_op.BaseFusedOp``
                                                                            (MultiPlatformOp a deprecated
                                                                            alias no layer subclasses)
``chain_verify_logprobs``      ``compute_spec_v2_logprobs(accept_index)``   ``compute_spec_logprobs(chain_stride=)``
``sampler_result``             ``Sampler._sample_from_probs`` -> ids        -> ``(ids, mask_capture)``
``simulated_commit_len``       private ``_sample_simulated_acc_len``        public ``sample_simulated_acc_len``
``plan_verify_forward``        init_new + graph/eager planning              + ``prepare_mamba_track_for_verify``
``chain_verify_attn_args``     flashinfer passes ``req_to_token``           passes ``translator``/``plan`` (kwargs)
``FutureMap.resolve_seq_lens`` ``(batch)``                                  ``(batch, stream_ordered=False)``
``BaseSpecWorker`` reads       ``draft_worker.draft_runner...``             also ``preloaded_weights_bytes``
``attention_tp_linear_kwargs`` ``tp_rank=, tp_size=``                       ``parallel_group="attn_tp"``
worker constructor kwargs     ``server_args, gpu_id, ps, nccl_port, ...``   no ``ps`` (worker.py takes it optional)
``forward_batch_generation``   ``(batch, on_publish, grammar_barrier)``     also ``pp_proxy_tensors=`` (None)
``effective_server_args``      fields resolved in place,                     raw record + declarations
                               ``get_global_server_args()``                  (``resolved_view``), the getter retired
``tensor_parallel_rank``       ``sglang.srt.distributed`` export             not exported: ``get_parallel().tp_rank``
``checkpoint_hf_config``       ``ServerArgs.get_model_config()``            ``handle_server_args`` gets a
                                                                            recorder view: ``model_config_of``
=============================  ===========================================  ==================

Two 0.5.23 changes outside this module's names: ``meta_info`` lost the aliases
``spec_accept_histogram`` / ``spec_accepted_drafts`` / ``spec_proposed_drafts`` (0.5.17 sent them
beside ``spec_correct_drafts_histogram`` / ``spec_num_correct_drafts`` / ``spec_num_proposed_drafts``,
which we read), and the tokenizer manager reads the speculative settings from a process-wide
context, so two engines of one Python process (one speculative, one not) disturb each other
(tests/sgl/sgl_engine.py starts the plain one in its own process).
"""

from __future__ import annotations

import importlib
from typing import Any

# ---- lazily imported SGLang names -------------------------------------------------------------
# name here -> candidates (module, attribute), first found wins; the comment says why we need it.
_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    # Registration (plugin.py, spec.py): SGLang's own plugin, algorithm and model registries.
    "SpeculativeAlgorithm": (("sglang.srt.speculative.spec_info", "SpeculativeAlgorithm"),),  # .register, .from_string
    "CustomSpecAlgo": (("sglang.srt.speculative.spec_info", "CustomSpecAlgo"),),  # base of OrthrusSpecAlgo
    "registered_algorithm": (("sglang.srt.speculative.spec_registry", "get_spec"),),  # idempotent register()
    "ModelRegistry": (("sglang.srt.models.registry", "ModelRegistry"),),  # the OrthrusLM architecture
    "HookRegistry": (("sglang.srt.plugins.hook_registry", "HookRegistry"),),  # hooks.py, no source patch
    "HookType": (("sglang.srt.plugins.hook_registry", "HookType"),),  # AFTER / AROUND
    "resolved_view": (("sglang.srt.arg_groups.overrides", "resolved_view"),),  # flags after model overrides
    "attention_backends_of": (("sglang.srt.arg_groups.overrides", "attention_backends_of"),),  # refuse fa3/fa4
    # The step (worker.py, step_info.py, future_map.py).
    "BaseSpecWorker": (("sglang.srt.speculative.base_spec_worker", "BaseSpecWorker"),),  # the worker's base
    "GenerationBatchResult": (("sglang.srt.managers.utils", "GenerationBatchResult"),),  # what a step returns
    "SpecInput": (("sglang.srt.speculative.spec_info", "SpecInput"),),  # base of our step input types
    "SpecInputType": (("sglang.srt.speculative.spec_info", "SpecInputType"),),  # the chain verify/draft tags
    "ForwardBatch": (("sglang.srt.model_executor.forward_batch_info", "ForwardBatch"),),  # the verify forward
    "ForwardMode": (("sglang.srt.model_executor.forward_batch_info", "ForwardMode"),),  # TARGET_VERIFY / IDLE
    "CaptureHiddenMode": (("sglang.srt.model_executor.forward_batch_info", "CaptureHiddenMode"),),  # NULL
    "FutureMap": (("sglang.srt.managers.overlap_utils", "FutureMap"),),  # spec-v2 relay between steps
    "GrammarTree": (("sglang.srt.speculative.spec_utils", "GrammarTree"),),  # grammar mask over the chain
    "build_grammar_vocab_mask": (("sglang.srt.speculative.spec_utils", "build_grammar_vocab_mask"),),  # same
    # verify_logits.py: what SGLang's sampler does per AR step, on every verify row.
    "apply_custom_logit_processor": (("sglang.srt.layers.sampler", "apply_custom_logit_processor"),),
    "runtime_exec": (("sglang.srt.runtime_context", "get_exec"),),  # captured decode batch sizes
    # block_states.py: the speculative settings the graph runner and attention backends read when built.
    "runtime_context": (("sglang.srt.runtime_context", "get_context"),),  # .override(source, **fields)
    "runtime_spec": (("sglang.srt.runtime_context", "get_spec"),),  # .speculative_num_draft_tokens
    # The model (models/orthrus.py): SGLang's layers, so TP, quantisation and the KV pool are SGLang's.
    "RMSNorm": (("sglang.srt.layers.layernorm", "RMSNorm"),),
    "QKVParallelLinear": (("sglang.srt.layers.linear", "QKVParallelLinear"),),  # TP-sharded projections
    "RowParallelLinear": (("sglang.srt.layers.linear", "RowParallelLinear"),),
    "LogitsProcessor": (("sglang.srt.layers.logits_processor", "LogitsProcessor"),),  # logits + logprobs
    "QuantizationConfig": (("sglang.srt.layers.quantization.base_config", "QuantizationConfig"),),
    "AttentionType": (("sglang.srt.layers.radix_attention", "AttentionType"),),  # ENCODER_ONLY = non-causal
    "RadixAttention": (("sglang.srt.layers.radix_attention", "RadixAttention"),),  # both views, one KV buffer
    "get_rope": (("sglang.srt.layers.rotary_embedding", "get_rope"),),
    "ParallelLMHead": (("sglang.srt.layers.vocab_parallel_embedding", "ParallelLMHead"),),
    "VocabParallelEmbedding": (("sglang.srt.layers.vocab_parallel_embedding", "VocabParallelEmbedding"),),
    "PPProxyTensors": (("sglang.srt.model_executor.forward_batch_info", "PPProxyTensors"),),  # forward() signature
    # block_attention (CUDA only) reads the KV pool and the request -> token table of this forward.
    "current_req_to_token_pool": (("sglang.srt.model_executor.forward_context", "get_req_to_token_pool"),),
    "current_token_to_kv_pool": (("sglang.srt.model_executor.forward_context", "get_token_to_kv_pool"),),
    "default_weight_loader": (("sglang.srt.model_loader.weight_utils", "default_weight_loader"),),
    "Qwen2MLP": (("sglang.srt.models.qwen2", "Qwen2MLP"),),  # the gated MLP (TP, fused SiLU)
    "apply_qk_norm": (("sglang.srt.models.utils", "apply_qk_norm"),),  # Qwen3's q/k RMSNorm
    "parallel_state": (("sglang.srt.runtime_context", "get_parallel"),),  # tp/attn-tp rank and size
    "add_prefix": (("sglang.srt.utils", "add_prefix"),),  # weight names, as SGLang's models build them
    # Base of SGLang's fused layer ops (RMSNorm, rope, ...): fp32 on CUDA switches them to their
    # PyTorch forward. 0.5.17: MultiPlatformOp; 0.5.23 made every op a BaseFusedOp (MultiPlatformOp is
    # left only as a deprecated alias no SGLang layer subclasses, and no longer in layers.utils).
    "FUSED_OP_BASE": (("sglang.srt.layers.utils", "MultiPlatformOp"), ("sglang.kernels.fused_op", "BaseFusedOp")),
    # Draft weights (draft_weights.py, models/orthrus.py). fp8: SGLang's w8a8 fp8 linear path, the
    # per-token activation quantisation kernel and the CUTLASS (sgl-kernel) scaled GEMM with small-M
    # tiles. int4: SGLang's Marlin w4a16 GEMM and the helpers that pack weights for it.
    "per_token_quant_fp8": (("sglang.kernels.ops.quantization.fp8_kernel", "sglang_per_token_quant_fp8"),
                            ("sglang.srt.layers.quantization.fp8_kernel", "sglang_per_token_quant_fp8")),
    "fp8_scaled_mm": (("sglang.kernels.ops.gemm", "fp8_scaled_mm"), ("sgl_kernel", "fp8_scaled_mm")),
    # Marlin (JIT-compiled on first use); the fp8 packing helpers serve bench/draft_gemm.py only.
    "apply_gptq_marlin_linear": (("sglang.srt.layers.quantization.marlin_utils", "apply_gptq_marlin_linear"),),
    "apply_fp8_marlin_linear": (("sglang.srt.layers.quantization.marlin_utils_fp8", "apply_fp8_marlin_linear"),),
    "marlin_make_workspace": (("sglang.srt.layers.quantization.marlin_utils", "marlin_make_workspace"),),
    "gptq_marlin_repack": (("sglang.kernels.ops.quantization.gptq_marlin_repack", "gptq_marlin_repack"),),
    "marlin_permute_scales": (("sglang.srt.layers.quantization.marlin_utils", "marlin_permute_scales"),),
    "pack_fp8_to_int32": (("sglang.srt.layers.quantization.marlin_utils_fp8", "pack_fp8_to_int32"),),
    "fp8_fused_exponent_bias_into_scales": (("sglang.srt.layers.quantization.marlin_utils_fp8",
                                             "fp8_fused_exponent_bias_into_scales"),),
    "scalar_types": (("sglang.srt.layers.quantization.marlin_utils", "scalar_types"),
                     ("sgl_kernel.scalar_type", "scalar_types")),
}

# Private SGLang methods hooked by dotted name (hooks.py), same name and arguments in 0.5.17 and 0.5.23
# (what _sample_from_probs returns changed: sampler_result below). Two private attributes are written
# too, each in one helper below: a fused op's ``_forward_method`` (run_fused_ops_natively) and the
# FutureMap's ``_publish_fresh`` (wait_for_published_lens). One private method is called, in one helper:
# ``ModelRunner._get_attention_backend`` (verify_graphs_for_block_size, as SGLang's adaptive EAGLE calls it).
# Builds the verify input for CUDA-graph capture; returns None for a plugin algorithm.
CAPTURE_SPEC_INFO_TARGET = ("sglang.srt.model_executor.runner.decode_cuda_graph_runner."
                            "DecodeCudaGraphRunner.get_spec_info")
# Draws a batch's tokens from probs; ORTHRUS draws a request's first token with its own keyed sampler.
SAMPLE_FROM_PROBS_TARGET = "sglang.srt.layers.sampler.Sampler._sample_from_probs"
# Turns a request into SGLang's tokenized form; ORTHRUS refuses sampling it cannot apply exactly (a 400).
CREATE_TOKENIZED_OBJECT_TARGET = "sglang.srt.managers.tokenizer_manager.TokenizerManager._create_tokenized_object"


def __getattr__(name: str) -> Any:
    candidates = _NAMES.get(name)
    if candidates is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    errors = []
    for module, attribute in candidates:
        try:
            value = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            errors.append(f"{module}.{attribute}: {exc}")
            continue
        globals()[name] = value  # resolved once per process
        return value
    raise ImportError(f"SGLang has none of {name}'s known locations ({'; '.join(errors)}); "
                      "this SGLang release is not supported (see orthrus_sglang/sgl/compat.py)")


def _module(name: str):
    return importlib.import_module(name)


# ---- step input tags -------------------------------------------------------------------------
def chain_verify_input_type():
    """The tag SGLang's attention backends and graph runners key on for a linear (non-tree)
    verify of uniform width with no custom mask: ORTHRUS's verify is that shape, so it takes
    the tag DFLASH's verify has and gets the same backend treatment (flashinfer's chain planner)."""
    return __getattr__("SpecInputType").DFLASH_VERIFY


def chain_draft_input_type():
    """The draft-input tag of the same family: the relay and batch padding treat it as a draft input."""
    return __getattr__("SpecInputType").DFLASH_DRAFT


# ---- version-dependent helpers ---------------------------------------------------------------
def plan_verify_forward(batch, model_runner, capture_hidden_mode, plan_attention: bool = True):
    """The TARGET_VERIFY ForwardBatch of ``batch`` (input ids, positions and spec_info already set)
    with its attention planned: the graph runner's buffers loaded, or the backend's eager metadata.
    Returns (forward_batch, can_run_cuda_graph). Mirrors SGLang's chain verify preparation.

    ``plan_attention=False`` (block_attention serves both passes): the backend is not planned at all.
    flashinfer's prefill plan copies its indptrs to the host, a blocking device-to-host copy that
    makes the host wait for the previous step's kernels before it can launch the next one."""
    ForwardBatch = __getattr__("ForwardBatch")
    idle = batch.forward_mode.is_idle()
    spec_utils = _module("sglang.srt.speculative.spec_utils")
    if not idle and hasattr(spec_utils, "prepare_mamba_track_for_verify"):  # 0.5.23+: no-op without mamba
        spec_utils.prepare_mamba_track_for_verify(batch)
    forward_batch = ForwardBatch.init_new(batch, model_runner, capture_hidden_mode=capture_hidden_mode,
                                          return_hidden_states_before_norm=False)
    runner = model_runner.decode_cuda_graph_runner
    can_run_graph = bool(runner and runner.can_run_graph(forward_batch))
    if can_run_graph and plan_attention:
        runner.load_batch(forward_batch)
    elif can_run_graph:
        # load_batch fills the graph's input buffers, then plans the runner's backend
        # (init_forward_metadata_out_graph, 0.5.17 and 0.5.23): that one call is skipped.
        backend = runner.attn_backend
        runner.attn_backend = _Unplanned(backend)
        try:
            runner.load_batch(forward_batch)
        finally:
            runner.attn_backend = backend
    elif not idle and plan_attention:
        model_runner.attn_backend.init_forward_metadata(forward_batch)
    return forward_batch, can_run_graph


class _Unplanned:
    """An attention backend whose per-forward host planning does nothing; everything else is the backend's."""

    __slots__ = ("_backend",)

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def init_forward_metadata_out_graph(self, forward_batch, in_capture: bool = False) -> None:
        pass


def chain_verify_attn_args(block_size: int, *args, **kwargs):
    """flashinfer's prefill-planner arguments for a chain verify of ``block_size`` tokens per request:
    (kv_indices, kv_indptr, qo_indptr, custom_mask=None). flashinfer calls the verify input's
    ``generate_attn_arg_prefill`` with 0.5.17's (req_pool_indices, paged_kernel_lens,
    paged_kernel_lens_sum, req_to_token, kv_start_idx=) or 0.5.23's keyword form with a KV index
    ``translator`` and ``plan``. Mirrors DFLASH's chain path without a ragged layout or mask."""
    import torch

    if "translator" in kwargs:  # 0.5.23+
        req_pool_indices, paged_kernel_lens = kwargs["req_pool_indices"], kwargs["paged_kernel_lens"]
        paged_kernel_lens_sum = kwargs["paged_kernel_lens_sum"]
        bs = req_pool_indices.numel()
    else:  # 0.5.17
        req_pool_indices, paged_kernel_lens, paged_kernel_lens_sum, req_to_token = args[:4]
        bs = len(req_pool_indices)
    device = req_pool_indices.device
    qo_indptr = torch.arange(0, (bs + 1) * block_size, step=block_size, dtype=torch.int32, device=device)
    kv_indptr = torch.zeros((bs + 1,), dtype=torch.int32, device=device)
    kv_lens = paged_kernel_lens + block_size
    kv_indptr[1:] = torch.cumsum(kv_lens, dim=0)
    kv_start_idx = kwargs.get("kv_start_idx")
    if "translator" in kwargs:
        kv_indices = kwargs.get("kv_indices_buf")
        if kv_indices is None:
            kv_indices = torch.empty(paged_kernel_lens_sum + block_size * bs, dtype=torch.int32, device=device)
        extra = {"kind": kwargs["kind"]} if "kind" in kwargs else {}
        kwargs["translator"].pack_read_stream(kwargs["plan"], req_pool_indices=req_pool_indices, seq_lens=kv_lens,
                                              indptr=kv_indptr, out=kv_indices, kv_start_idx=kv_start_idx, **extra)
    else:
        create_kv_indices = _module("sglang.kernels.ops.attention.utils").create_flashinfer_kv_indices_triton
        kv_indices = torch.empty(paged_kernel_lens_sum + block_size * bs, dtype=torch.int32, device=device)
        create_kv_indices[(bs,)](req_to_token, req_pool_indices, kv_lens, kv_indptr, kv_start_idx, kv_indices,
                                 req_to_token.size(1))
    return kv_indices, kv_indptr, qo_indptr, None


def verify_graphs_for_block_size(model_runner, block_size: int):
    """(attention backend, TARGET_VERIFY CUDA-graph runner) for steps of ``block_size`` tokens per
    request, beside the pair SGLang built at startup for --speculative-num-draft-tokens. SGLang's own
    adaptive EAGLE builds its per-size pairs this way (EAGLEWorkerV2.build_adaptive_runtime_state, 0.5.17
    and 0.5.23): a fresh backend (its graph metadata is keyed by batch size only) and a runner of the
    startup runner's class, both built while the runtime context says ``block_size``. The float
    workspace is shared: steps of different sizes never overlap. (backend, None) without startup graphs."""
    startup = model_runner.decode_cuda_graph_runner
    if startup is None:
        return model_runner.attn_backend, None
    context, spec = __getattr__("runtime_context")(), __getattr__("runtime_spec")()
    saved = spec.speculative_num_draft_tokens
    context.override("orthrus.block_size_capture", speculative_num_draft_tokens=int(block_size))
    try:
        backend = model_runner._get_attention_backend(init_new_workspace=False)
        runner = type(startup)(model_runner, attn_backend=backend, speculative_num_draft_tokens=int(block_size))
    finally:
        context.override("orthrus.block_size_restore", speculative_num_draft_tokens=saved)
    return backend, runner


def chain_verify_logprobs(batch, logits_output, tokens, block_size: int) -> None:
    """Fill ``logits_output``'s logprob fields for a chain verify whose output token (i, j) came
    from logits row i*B + j (``tokens``: [bs*B])."""
    processor = _module("sglang.srt.layers.logprob_processor")
    if hasattr(processor, "compute_spec_logprobs"):  # 0.5.23+
        processor.compute_spec_logprobs(batch, logits_output, tokens, chain_stride=block_size)
        return
    import torch

    bs = len(batch.seq_lens)
    accept_index = torch.arange(bs * block_size, device=tokens.device, dtype=torch.int64).view(bs, block_size)
    processor.compute_spec_v2_logprobs(batch, logits_output, tokens, accept_index, block_size - 1)


def sampler_result(token_ids):
    """What ``Sampler._sample_from_probs`` returns: ids (0.5.17), or (ids, sampling-mask capture)
    (0.5.23+; None: ORTHRUS's own draw records no sampling mask)."""
    if _sampler_returns_mask_capture():
        return token_ids, None
    return token_ids


def _sampler_returns_mask_capture() -> bool:
    global _SAMPLER_PAIR
    if _SAMPLER_PAIR is None:
        _SAMPLER_PAIR = hasattr(_module("sglang.srt.layers.sampler"), "_SamplingMaskCapture")
    return _SAMPLER_PAIR


_SAMPLER_PAIR: bool | None = None


def simulated_commit_len(block_size: int) -> int | None:
    """SGLang's pinned-acceptance benchmark switch (SGLANG_SIMULATE_ACC_LEN, read at import):
    the tokens every request commits this step, in [1, block_size]; None when the switch is off."""
    spec_utils = _module("sglang.srt.speculative.spec_utils")
    if not spec_utils.SIMULATE_ACC_LEN > 0:
        return None
    if spec_utils.SIMULATE_ACC_TOKEN_MODE not in ("fixed", "real-draft-token"):
        raise ValueError(f"Invalid SGLANG_SIMULATE_ACC_TOKEN_MODE {spec_utils.SIMULATE_ACC_TOKEN_MODE!r}; "
                         "expected 'fixed' or 'real-draft-token'.")
    sample = getattr(spec_utils, "sample_simulated_acc_len", None)  # 0.5.23+
    if sample is None:
        sample = spec_utils._sample_simulated_acc_len  # 0.5.17
    return int(sample(spec_utils.SIMULATE_ACC_LEN, spec_utils.SIMULATE_ACC_METHOD, block_size))


def simulated_uses_real_drafts() -> bool:
    """SGLANG_SIMULATE_ACC_TOKEN_MODE=real-draft-token: the pinned run commits real drafts, not a fixed id."""
    return _module("sglang.srt.speculative.spec_utils").SIMULATE_ACC_TOKEN_MODE == "real-draft-token"


def effective_server_args(server_args=None):
    """The server arguments in effect (after SGLang's resolution and our handle_server_args), read-only:
    of ``server_args``, or of this process's published ones. 0.5.17 resolved in place; 0.5.23 keeps the
    operator's raw input in the record and the resolved values as declarations over it (and retired
    ``get_global_server_args``), so read through SGLang's resolved view in both."""
    if server_args is None:
        try:
            server_args = _module("sglang.srt.server_args").get_global_server_args()  # 0.5.17
        except RuntimeError:  # 0.5.23: retired
            server_args = _module("sglang.srt.runtime_context").get_server_args()
    return __getattr__("resolved_view")(server_args)


def checkpoint_hf_config(server_args):
    """The checkpoint's HF config as SGLang reads it, from what ``handle_server_args`` is handed:
    the ServerArgs itself (0.5.17), or 0.5.23's recorder of plugin writes over the resolving view."""
    if hasattr(type(server_args), "get_model_config"):  # 0.5.17
        return server_args.get_model_config().hf_config
    view = server_args
    try:
        view = object.__getattribute__(server_args, "_cfg")  # 0.5.23: _ForeignDefaults over a ResolvingConfig
    except AttributeError:
        pass
    return _module("sglang.srt.arg_groups.model_override_base").model_config_of(view).hf_config


def attention_tp_linear_kwargs() -> dict:
    """Keyword arguments that shard an attention projection (QKVParallelLinear / RowParallelLinear)
    over the attention-TP group: 0.5.17 takes the rank and size, 0.5.23 names the group."""
    import inspect

    if "parallel_group" in inspect.signature(__getattr__("QKVParallelLinear").__init__).parameters:  # 0.5.23+
        return {"parallel_group": "attn_tp"}
    parallel = __getattr__("parallel_state")()
    return {"tp_rank": parallel.attn_tp_rank, "tp_size": parallel.attn_tp_size}


def tensor_parallel_rank() -> int:
    """This process's TP rank (metrics are kept by rank 0). 0.5.23 dropped
    ``sglang.srt.distributed.get_tensor_model_parallel_rank`` from the package's exports; the
    runtime context answers in both."""
    return int(__getattr__("parallel_state")().tp_rank)


def decode_graph_max_batch_size() -> int:
    """The largest batch the decode CUDA graphs were configured for (0 when none, or no runtime context)."""
    try:
        graph = __getattr__("runtime_exec")().graph.cuda_graph_config
    except Exception:  # the runtime context is not set up in every process that builds a worker
        return 0
    return graph.decode.max_bs if graph is not None else 0


def run_fused_ops_natively(model) -> None:
    """Every SGLang fused op (RMSNorm, rope, SiLU-and-mul: FUSED_OP_BASE) in ``model`` runs its
    PyTorch ``forward_native``. Both releases dispatch through the op's private ``_forward_method``
    (0.5.17: set at construction; 0.5.23: resolved on first call unless already set, which a
    subclass may do to pin a path): setting it pins the native path in both."""
    base = __getattr__("FUSED_OP_BASE")
    for module in model.modules():
        if isinstance(module, base):
            module._forward_method = module.forward_native


def wait_for_published_lens(future_map) -> None:
    """What ``FutureMap.resolve_seq_lens_cpu`` does before it gathers the committed lengths, without
    the host copy: the current stream waits (on the device) for the step that published them, and
    the publish is marked consumed (the private ``_publish_fresh`` flag SGLang's debug assertion
    checks; same name and meaning in 0.5.17 and 0.5.23)."""
    if future_map.publish_ready is not None:
        future_map._publish_fresh = False
        future_map.publish_ready.wait()


def fp8_w8a8_kernels(device):
    """SGLang's fused w8a8 fp8 GEMM for ``device`` as fp8.Fp8Kernels (the arithmetic fp8.py
    emulates: per-token activation scales, per-channel weight scales), or None where it does not
    run: not CUDA, a GPU before Ada (sm89), or an SGLang without the kernels."""
    import torch

    from ..fp8 import Fp8Kernels

    if torch.device(device).type != "cuda" or torch.version.hip or torch.cuda.get_device_capability(device) < (8, 9):
        return None
    try:
        quantize, scaled_mm = __getattr__("per_token_quant_fp8"), __getattr__("fp8_scaled_mm")
    except ImportError:
        return None
    return Fp8Kernels(quantize_rows=quantize, scaled_mm=scaled_mm, name="w8a8")


def int4_marlin_kernels(device):
    """SGLang's Marlin w4a16 GEMM for ``device`` as int4.Int4Kernels (uint4b8 weights, per-group
    scales, bf16/fp16 activations), or None off CUDA / before Ampere. Packing and the GEMM are
    JIT-compiled by SGLang on first use (minutes on a cold host, cached after)."""
    import torch

    from ..int4 import Int4Kernels

    if torch.device(device).type != "cuda" or torch.version.hip or torch.cuda.get_device_capability(device) < (8, 0):
        return None

    def pack(q, scale, group, dtype):
        """q [N, K] int8 in [-8, 7] -> GPTQ's [K / 8, N] int32 (value + 8, eight along K per word,
        the i-th in bits 4i) -> Marlin's tiles; scales [K / group, N] in the activation dtype."""
        n, k = q.shape
        u = (q.to(torch.int32) + 8).t().contiguous().view(k // 8, 8, n)
        packed = torch.zeros((k // 8, n), dtype=torch.int32, device=q.device)
        for i in range(8):
            packed |= u[:, i, :] << (4 * i)
        marlin_q = __getattr__("gptq_marlin_repack")(b_q_weight=packed, perm=torch.empty(0, dtype=torch.int,
                                                     device=q.device), size_k=k, size_n=n, num_bits=4)
        marlin_s = __getattr__("marlin_permute_scales")(s=scale.t().contiguous().to(dtype), size_k=k, size_n=n,
                                                        group_size=group)
        empty = torch.empty(0, dtype=torch.int, device=q.device)
        return marlin_q, marlin_s, __getattr__("marlin_make_workspace")(q.device), empty, n, k

    def gemm(x, packed, bias):
        marlin_q, marlin_s, workspace, empty, n, k = packed
        return __getattr__("apply_gptq_marlin_linear")(x, marlin_q, marlin_s, empty, empty, empty, workspace,
                                                       __getattr__("scalar_types").uint4b8, n, k, True, bias)

    def supports(n, k, group):  # Marlin's tiles: N in 64s, K in 128s; groups of 32, 64, 128 or one per row
        return n % 64 == 0 and k % 128 == 0 and group in (32, 64, 128, k)

    return Int4Kernels(pack=pack, gemm=gemm, supports=supports, name="marlin")


def draft_kernels(kind: str, device):
    """The fused kernels for ``kind`` draft weights (draft_weights.py) on ``device``, or None (emulation)."""
    if kind == "fp8":
        return fp8_w8a8_kernels(device)
    if kind.startswith("int4"):  # int4-g64 / int4-g32 too: Marlin takes groups of 32 and 64
        return int4_marlin_kernels(device)
    return None


def is_torch_native_backend(attn_backend) -> bool:
    """SGLang's CPU attention backend, which runs TARGET_VERIFY as prefix + new tokens."""
    return type(attn_backend).__name__ == "TorchNativeAttnBackend"
