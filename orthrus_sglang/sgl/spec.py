"""The ORTHRUS speculative algorithm's identity and server-argument rules."""

from __future__ import annotations

import logging

from . import compat
from .options import block_policy, block_sizes, default_block_size, draft_weights

logger = logging.getLogger(__name__)

# Backends validated with ORTHRUS: triton and flashinfer on the GPU host (CUDA graphs, overlap;
# tests/gpu (e) checks flashinfer's non-causal diffusion pass draft for draft against the reference)
# and torch_native, SGLang's CPU path. fa3/fa4 should honour ENCODER_ONLY the same way
# (docs/design.md) but have not run here (the GPU host's sgl-kernel has no FA3): refused until a test
# says otherwise.
SUPPORTED_ATTENTION_BACKENDS = ("triton", "flashinfer", "torch_native")


class OrthrusSpecAlgo(compat.CustomSpecAlgo):
    """Draft and verify live in the target model: no draft model, no draft KV."""

    # CustomSpecAlgo (0.5.17, 0.5.23) lacks these three; the scheduler calls them for every algorithm.
    def need_topk(self) -> bool:
        return False

    def carries_draft_hidden_states(self) -> bool:
        return False

    def create_future_map(self, device, req_to_token_pool, needs_cpu_seq_lens=True, needs_confidence_relay=False):
        from .options import use_block_attention

        block_size = use_block_attention() and compat.effective_server_args().speculative_num_draft_tokens
        if block_size:  # block_attention reads no host lengths: no host wait per step (future_map.py)
            from .future_map import OrthrusFutureMap

            return OrthrusFutureMap(device, self, req_to_token_pool, needs_cpu_seq_lens, needs_confidence_relay,
                                    block_size=int(block_size))
        return compat.FutureMap(device, self, req_to_token_pool, needs_cpu_seq_lens, needs_confidence_relay)

    def has_draft_kv(self) -> bool:
        return False

    def handle_server_args(self, server_args) -> None:
        """Runs after validate_orthrus_server_args, in the main process, before any worker starts."""
        block_size = compat.checkpoint_hf_config(server_args).block_size
        if server_args.speculative_num_draft_tokens is None:
            # B=16 beat the released checkpoints' B=32 at every concurrency measured (bench/README.md).
            server_args.speculative_num_draft_tokens = default_block_size(block_size)
            logger.info("ORTHRUS: block size %d (checkpoint's %d; override with --speculative-num-draft-tokens "
                        "or ORTHRUS_DEFAULT_BLOCK_SIZE)", server_args.speculative_num_draft_tokens, block_size)
        elif int(server_args.speculative_num_draft_tokens) != block_size:
            logger.warning("ORTHRUS: --speculative-num-draft-tokens %s differs from the checkpoint's block_size %s "
                           "(the diffusion view was trained at %s): acceptance may drop.",
                           server_args.speculative_num_draft_tokens, block_size, block_size)
        block_sizes(int(server_args.speculative_num_draft_tokens))  # ORTHRUS_BLOCK_SIZES within 1..B, or say why
        # One chain of B tokens per step: the generic spec-v2 KV sizing then reserves 2B per request.
        # Under ORTHRUS_BLOCK_POLICY=adaptive B is the largest size a step takes.
        server_args.speculative_num_steps = 1
        server_args.speculative_eagle_topk = 1
        server_args.enable_mixed_chunk = False
        if server_args.max_running_requests is None:
            server_args.max_running_requests = 32
        if server_args.device == "cpu" and not server_args.disable_overlap_schedule:
            server_args.disable_overlap_schedule = True  # SGLang has no overlap spec path on CPU


def _attention_backends(server_args) -> set[str]:
    return {b for b in compat.attention_backends_of(compat.resolved_view(server_args)) if b}


def validate_orthrus_server_args(server_args) -> None:
    """Refuse, at startup and with the flag's name, everything ORTHRUS cannot honour."""
    problems = []
    if server_args.speculative_draft_model_path is not None:
        problems.append("--speculative-draft-model-path: ORTHRUS drafts with the model's own diffusion view; "
                        "there is no draft model to load")
    if server_args.speculative_num_draft_tokens is not None and int(server_args.speculative_num_draft_tokens) < 2:
        problems.append("--speculative-num-draft-tokens must be >= 2 (the block: last token + drafts)")
    if compat.resolved_view(server_args).enable_dp_attention:
        problems.append("--enable-dp-attention is not supported")
    if server_args.pp_size != 1:
        problems.append("--pp-size > 1 is not supported")
    if server_args.disaggregation_mode != "null":
        problems.append("--disaggregation-mode is not supported")
    if server_args.enable_lora:
        problems.append("--enable-lora is not supported")
    if server_args.enable_two_batch_overlap:
        problems.append("--enable-two-batch-overlap is not supported")
    if server_args.speculative_adaptive:
        problems.append("--speculative-adaptive is EAGLE's; for a block size chosen per step set "
                        "ORTHRUS_BLOCK_POLICY=adaptive")
    if server_args.kv_canary != "none":
        problems.append("--kv-canary: the canary checks the step's input ids ([t, MASK...]), not the verified tokens")
    try:  # an ORTHRUS_* option with a bad value: said now, not when the model loads
        if block_policy() == "adaptive" and (server_args.tp_size or 1) > 1:
            # Each rank times its own steps: their choices could differ, and a step is one collective.
            problems.append("ORTHRUS_BLOCK_POLICY=adaptive supports --tp 1 only (each rank would choose its block "
                            "size from its own timings)")
        kind = draft_weights()
        if kind not in ("bf16", "auto") and (server_args.tp_size or 1) > 1:  # auto is bf16 there
            problems.append(f"ORTHRUS_DRAFT_WEIGHTS={kind} supports --tp 1 only")
    except ValueError as exc:
        problems.append(str(exc))
    unsupported = _attention_backends(server_args) - set(SUPPORTED_ATTENTION_BACKENDS)
    if unsupported:
        problems.append(f"attention backend {sorted(unsupported)} is not validated with ORTHRUS yet; "
                        f"pass --attention-backend one of {list(SUPPORTED_ATTENTION_BACKENDS)}")
    try:
        import torch

        if torch.version.hip is not None:
            problems.append("ROCm is not supported (its eager extend path runs the diffusion attention causally)")
    except ImportError:
        pass
    if problems:
        raise ValueError("ORTHRUS cannot run with these settings: " + "; ".join(problems))
