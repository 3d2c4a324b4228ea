"""OrthrusLM for SGLang: a Qwen3/Llama decoder with a second (diffusion) attention view.

Without ORTHRUS it is a plain AR model (the diff weights sit idle). In ``TARGET_VERIFY`` under
the ORTHRUS algorithm, one ``forward`` runs both phases of a step (so one CUDA graph holds them):

1. diffusion view over ``[t, MASK x (B-1)]`` through ``attn_diff``, a second RadixAttention
   with the same layer_id (same KV buffer) and ``ENCODER_ONLY`` (non-causal over prefix+block).
   It writes its K/V into the step's verify slots ``out_cache_loc``;
2. drafts = argmax of the diffusion logits of block rows 0..B-2 (or a keyed draw from them), written
   into the worker's step buffers, which the step's verify input carries (step_buffers.py);
3. AR view over ``[t, d_1..d_{B-1}]``: it overwrites every one of those slots with AR K/V
   before its own attention reads them, so no diffusion K/V ever survives the forward.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable, Optional

import torch
from torch import nn

from ...draft_weights import draft_linear, path_for, prepare_for, quantize, resolve
from ..block_attention import block_attention
from ..compat import (
    AttentionType,
    ForwardBatch,
    LogitsProcessor,
    ParallelLMHead,
    PPProxyTensors,
    QKVParallelLinear,
    QuantizationConfig,
    Qwen2MLP,
    RadixAttention,
    RMSNorm,
    RowParallelLinear,
    VocabParallelEmbedding,
    add_prefix,
    apply_qk_norm,
    attention_tp_linear_kwargs,
    current_req_to_token_pool,
    current_token_to_kv_pool,
    default_weight_loader,
    draft_kernels,
    fp8_w8a8_kernels,
    get_rope,
    parallel_state,
    run_fused_ops_natively,
)
from ..options import block_attention_splits, draft_weights, use_block_attention
from ..step_buffers import StepBuffers

if TYPE_CHECKING:
    from ...draft_weights import DraftWeight

logger = logging.getLogger(__name__)
ALGORITHM_NAME = "ORTHRUS"
VIEWS = ("", "_diff")  # AR view, diffusion view: the suffix of their parameter names


def _rope_args(config) -> tuple[float, Optional[dict]]:
    params = getattr(config, "rope_parameters", None) or {}
    if "rope_theta" in params:
        return params["rope_theta"], params
    return getattr(config, "rope_theta", 1e6), getattr(config, "rope_scaling", None)


class OrthrusAttention(nn.Module):
    def __init__(self, config, layer_id: int, quant_config: Optional[QuantizationConfig], prefix: str):
        super().__init__()
        tp_size = parallel_state().attn_tp_size
        shard = attention_tp_linear_kwargs()  # over the attention-TP group
        self.total_num_heads, self.total_num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        assert self.total_num_heads % tp_size == 0
        self.num_heads = self.total_num_heads // tp_size
        self.num_kv_heads = max(1, self.total_num_kv_heads // tp_size)
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.total_num_heads
        self.q_size, self.kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.qk_norm = getattr(config, "backbone", "qwen3") == "qwen3"
        bias = config.attention_bias
        for suffix in VIEWS:
            self.add_module(f"qkv_proj{suffix}", QKVParallelLinear(
                config.hidden_size, self.head_dim, self.total_num_heads, self.total_num_kv_heads, bias=bias,
                quant_config=quant_config, prefix=add_prefix(f"qkv_proj{suffix}", prefix), **shard))
            self.add_module(f"o_proj{suffix}", RowParallelLinear(
                self.total_num_heads * self.head_dim, config.hidden_size, bias=bias, quant_config=quant_config,
                reduce_results=True, prefix=add_prefix(f"o_proj{suffix}", prefix), **shard))
            if self.qk_norm:
                self.add_module(f"q_norm{suffix}", RMSNorm(self.head_dim, eps=config.rms_norm_eps))
                self.add_module(f"k_norm{suffix}", RMSNorm(self.head_dim, eps=config.rms_norm_eps))
        rope_theta, rope_scaling = _rope_args(config)
        self.rotary_emb = get_rope(self.head_dim, rotary_dim=self.head_dim, max_position=config.max_position_embeddings,
                                   base=rope_theta, rope_scaling=rope_scaling)
        scaling = self.head_dim**-0.5
        self.attn = RadixAttention(self.num_heads, self.head_dim, scaling, num_kv_heads=self.num_kv_heads,
                                   layer_id=layer_id, prefix=add_prefix("attn", prefix))
        # Same layer_id = same KV buffer; ENCODER_ONLY = causal=False in TARGET_VERIFY on every backend.
        self.attn_diff = RadixAttention(self.num_heads, self.head_dim, scaling, num_kv_heads=self.num_kv_heads,
                                        layer_id=layer_id, attn_type=AttentionType.ENCODER_ONLY,
                                        prefix=add_prefix("attn_diff", prefix))
        self.use_block_kernel = use_block_attention()
        self.draft_diff: Optional[tuple[DraftWeight, DraftWeight]] = None  # (qkv, o): fp8/int4 draft weights

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, forward_batch: ForwardBatch,
                diffusion: bool = False) -> torch.Tensor:
        suffix = VIEWS[diffusion]
        low = self.draft_diff if diffusion else None  # low-precision draft weights (ORTHRUS_DRAFT_WEIGHTS)
        qkv = draft_linear(hidden_states, low[0]) if low else getattr(self, f"qkv_proj{suffix}")(hidden_states)[0]
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        if self.qk_norm:
            q, k = apply_qk_norm(q=q, k=k, q_norm=getattr(self, f"q_norm{suffix}"),
                                 k_norm=getattr(self, f"k_norm{suffix}"), head_dim=self.head_dim)
        q, k = self.rotary_emb(positions, q, k)
        attn = self.attn_diff if diffusion else self.attn
        if self.use_block_kernel and is_orthrus_verify(forward_batch):
            attn_out = self._block_attention(q, k, v, forward_batch, attn, causal=not diffusion)
        else:
            attn_out = attn(q, k, v, forward_batch, save_kv_cache=True)
        return draft_linear(attn_out, low[1]) if low else getattr(self, f"o_proj{suffix}")(attn_out)[0]

    def _block_attention(self, q, k, v, forward_batch: ForwardBatch, layer: RadixAttention, causal: bool):
        """Both passes of an ORTHRUS step on CUDA: store the block's K/V into its verify slots, then
        attend prefix + block with block_attention (device-only metadata; see block_attention.py)."""
        pool = current_token_to_kv_pool()
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        pool.set_kv_buffer(layer, forward_batch.out_cache_loc, k, v, layer.k_scale, layer.v_scale)
        k_buffer, v_buffer = pool.get_key_buffer(layer.layer_id), pool.get_value_buffer(layer.layer_id)
        if k_buffer.dtype != q.dtype:
            raise ValueError(f"ORTHRUS block attention needs a {q.dtype} KV cache, got {k_buffer.dtype}; "
                             "set ORTHRUS_BLOCK_ATTENTION=0 to use the attention backend instead")
        bs = forward_batch.batch_size
        q = q.view(-1, self.num_heads, self.head_dim)
        out = block_attention(
            q, k_buffer.view(-1, self.num_kv_heads, self.head_dim), v_buffer.view(-1, self.num_kv_heads, self.head_dim),
            current_req_to_token_pool().req_to_token, forward_batch.req_pool_indices, forward_batch.seq_lens,
            block_size=q.shape[0] // bs, causal=causal, sm_scale=layer.scaling,
            num_splits=block_attention_splits(bs, self.num_kv_heads, q.device))
        return out.view(-1, self.num_heads * self.head_dim)


class OrthrusDecoderLayer(nn.Module):
    def __init__(self, config, layer_id: int, quant_config, prefix: str):
        super().__init__()
        self.self_attn = OrthrusAttention(config, layer_id, quant_config, add_prefix("self_attn", prefix))
        self.mlp = Qwen2MLP(config.hidden_size, config.intermediate_size, config.hidden_act,
                            quant_config=quant_config, prefix=add_prefix("mlp", prefix))
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.draft_mlp: Optional[tuple[DraftWeight, DraftWeight]] = None  # (gate_up, down) for the draft pass

    def forward(self, positions, hidden_states, forward_batch, residual, diffusion: bool = False):
        if residual is None:
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
        else:
            hidden_states, residual = self.input_layernorm(hidden_states, residual)
        hidden_states = self.self_attn(positions, hidden_states, forward_batch, diffusion)
        hidden_states, residual = self.post_attention_layernorm(hidden_states, residual)
        if diffusion and self.draft_mlp is not None:
            gate_up, down = self.draft_mlp
            return draft_linear(self.mlp.act_fn(draft_linear(hidden_states, gate_up)), down), residual
        return self.mlp(hidden_states), residual


class OrthrusModel(nn.Module):
    def __init__(self, config, quant_config, prefix: str):
        super().__init__()
        self.config = config
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size,
                                                   quant_config=quant_config, prefix=add_prefix("embed_tokens", prefix))
        self.layers = nn.ModuleList(
            OrthrusDecoderLayer(config, i, quant_config, add_prefix(f"layers.{i}", prefix))
            for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.start_layer, self.end_layer = 0, config.num_hidden_layers

    def forward(self, input_ids, positions, forward_batch, input_embeds=None, diffusion: bool = False):
        hidden_states = self.embed_tokens(input_ids) if input_embeds is None else input_embeds
        residual = None
        for layer in self.layers:
            hidden_states, residual = layer(positions, hidden_states, forward_batch, residual, diffusion)
        hidden_states, _ = self.norm(hidden_states, residual)
        return hidden_states


def _use_native_ops(model: nn.Module) -> None:
    """fp32 on CUDA: SGLang's fused kernels (RMSNorm, rope, SiLU-and-mul) take bf16/fp16 only, so
    every such op runs its PyTorch forward instead. Slow, but it makes fp32 serving, and the exact
    fp32 GPU comparisons in tests/gpu, possible."""
    run_fused_ops_natively(model)


def _draft_linears(layer: nn.Module) -> tuple:
    """A layer's linears whose weights get low-precision copies for the draft pass (draft_weights.py):
    gate_up, down, qkv_diff, o_diff."""
    return layer.mlp.gate_up_proj, layer.mlp.down_proj, layer.self_attn.qkv_proj_diff, layer.self_attn.o_proj_diff


def is_orthrus_verify(forward_batch: ForwardBatch) -> bool:
    return (forward_batch.forward_mode.is_target_verify()
            and getattr(forward_batch.spec_algorithm, "name", None) == ALGORITHM_NAME)


class OrthrusLM(nn.Module):
    def __init__(self, config, quant_config: Optional[QuantizationConfig] = None, prefix: str = ""):
        super().__init__()
        self._refuse_unsupported(config)
        self.config = config
        self.quant_config = quant_config
        self.model = OrthrusModel(config, quant_config, add_prefix("model", prefix))
        if config.tie_word_embeddings:
            self.lm_head = self.model.embed_tokens
        else:
            self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, quant_config=quant_config,
                                          prefix=add_prefix("lm_head", prefix))
        self.logits_processor = LogitsProcessor(config)
        if torch.get_default_dtype() == torch.float32 and torch.cuda.is_available():
            _use_native_ops(self)
        self.draft_lm_head: Optional[DraftWeight] = None

    @staticmethod
    def _refuse_unsupported(config) -> None:
        if getattr(config, "mlp_bias", False):
            raise ValueError("OrthrusLM in SGLang does not support mlp_bias=True checkpoints")
        if getattr(config, "hidden_act", "silu") != "silu":
            raise ValueError(f"OrthrusLM in SGLang supports hidden_act='silu' only, got {config.hidden_act!r}")

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def get_embed_and_head(self):
        return self.model.embed_tokens.weight, self.lm_head.weight

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch,
                input_embeds: torch.Tensor = None, get_embedding: bool = False,
                pp_proxy_tensors: Optional[PPProxyTensors] = None):
        if get_embedding:
            raise ValueError("OrthrusLM is a generation model; embeddings are not supported")
        if is_orthrus_verify(forward_batch):
            return self._draft_then_verify(input_ids, positions, forward_batch)
        hidden_states = self.model(input_ids, positions, forward_batch, input_embeds)
        return self.logits_processor(input_ids, hidden_states, self.lm_head, forward_batch)

    def _draft_then_verify(self, block_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch):
        """block_ids: [bs*B] = per request [t, MASK x (B-1)]. Returns the verify logits [bs*B, V];
        the drafts go to the step's buffers (``forward_batch.spec_info.buffers``, the worker's)."""
        bs = forward_batch.batch_size
        B = block_ids.numel() // bs
        if B == 1:  # a plain AR step (ORTHRUS_BLOCK_POLICY=adaptive picked it): no drafts, no draft pass
            hidden = self.model(block_ids, positions, forward_batch)
            return self.logits_processor(block_ids, hidden, self.lm_head, forward_batch)
        buffers: StepBuffers = forward_batch.spec_info.buffers
        hidden = self.model(block_ids, positions, forward_batch, diffusion=True)  # writes transient diff K/V
        if buffers.sampling is not None:  # sampled drafts: a keyed draw from q per sampled row
            drafts = self._draft_sample(block_ids, positions, hidden, forward_batch, bs, B, buffers.sampling)
        else:
            drafts = self._draft_argmax(block_ids, hidden, forward_batch, bs, B)  # row i predicts position L+i+1
        buffers.draft_ids[: bs * (B - 1)].copy_(drafts.reshape(-1))
        verify_ids = torch.cat([block_ids.view(bs, B)[:, :1], drafts], dim=1).reshape(-1)
        hidden = self.model(verify_ids, positions, forward_batch)  # overwrites every verify slot with AR K/V
        return self.logits_processor(verify_ids, hidden, self.lm_head, forward_batch)

    def _draft_argmax(self, block_ids, hidden, forward_batch, bs: int, B: int) -> torch.Tensor:
        """[bs, B-1] drafts: argmax of the diffusion logits of block rows 0..B-2 (row i predicts L+i+1)."""
        return self._draft_logits(block_ids, hidden, forward_batch, bs, B).argmax(dim=-1)

    def _draft_logits(self, block_ids, hidden, forward_batch, bs: int, B: int) -> torch.Tensor:
        """[bs, B-1, V] diffusion logits of block rows 0..B-2.

        On one GPU the B-1 rows go straight through lm_head in the model dtype (no fp32 [bs*B, V]
        logits through the logits processor, no row B-1). Under TP the logits processor gathers
        the vocabulary across ranks, so drafts are exact at any TP."""
        if parallel_state().tp_size > 1 or not hasattr(self.lm_head, "weight"):
            logits = self.logits_processor(block_ids, hidden, self.lm_head, forward_batch).next_token_logits
            return logits.view(bs, B, -1)[:, : B - 1, : self.config.vocab_size]
        rows = hidden.view(bs, B, -1)[:, : B - 1].reshape(bs * (B - 1), -1)
        if self.draft_lm_head is not None:
            return draft_linear(rows, self.draft_lm_head).view(bs, B - 1, -1)
        weight = self.lm_head.weight[: self.config.vocab_size]  # drop the vocab padding rows
        return torch.matmul(rows.to(weight.dtype), weight.t()).view(bs, B - 1, -1)

    def _draft_sample(self, block_ids, positions, hidden, forward_batch, bs: int, B: int, slots) -> torch.Tensor:
        """[bs, B-1] drafts drawn from q (accept.sample_drafts) with the batch's parameters from the
        static buffers ``slots`` (draft_sampling.DraftSampling); greedy rows take the argmax. q goes
        back to the buffers for the acceptance. No host sync and fixed shapes: it is captured in the
        step's CUDA graph."""
        from ...accept import sample_drafts

        logits = self._draft_logits(block_ids, hidden, forward_batch, bs, B)
        drafts, dist = sample_drafts(logits, slots.rows(bs), positions.view(bs, B)[:, 0], slots.candidates)
        slots.store(dist)
        return drafts

    # ---- low-precision draft weights -------------------------------------------------------
    def post_load_weights(self) -> None:
        """After the weights are in (load_weights, or a loader that bypasses it, e.g. dummy)."""
        kind = draft_weights()
        if kind == "auto":
            kind = self._resolve_auto()
        if kind != "bf16" and self.draft_lm_head is None:
            self._build_draft_weights(kind)

    def _resolve_auto(self) -> str:
        """ORTHRUS_DRAFT_WEIGHTS=auto: the kind draft_weights.resolve picks for this model on this device."""
        device, dtype, tp_size = self.lm_head.weight.device, next(self.parameters()).dtype, parallel_state().tp_size
        shapes = [tuple(linear.weight.shape) for layer in self.model.layers for linear in _draft_linears(layer)]
        shapes.append(tuple(self._lm_head_rows().shape))
        kind = resolve("auto", fp8_w8a8_kernels(device), dtype, shapes, tp_size)
        logger.info("ORTHRUS_DRAFT_WEIGHTS=auto: %s drafts (%s, %s, tp %d)", kind, device, dtype, tp_size)
        return kind

    def _lm_head_rows(self) -> torch.Tensor:
        """lm_head's rows of real tokens (its weight may be padded past the vocabulary)."""
        return self.lm_head.weight[: self.config.vocab_size]

    def _build_draft_weights(self, kind: str) -> None:
        """fp8 or int4 copies (draft_weights.py) of what the draft pass reads most: MLP, diffusion
        attention projections, lm_head. The diffusion attention keeps only its copy (nothing else reads it)."""
        if parallel_state().tp_size > 1:
            raise ValueError(f"ORTHRUS_DRAFT_WEIGHTS={kind} supports --tp 1 only")
        cuda = torch.cuda.is_available()
        before = (torch.cuda.memory_allocated(), torch.cuda.memory_reserved()) if cuda else (0, 0)
        kernels = draft_kernels(kind, self.lm_head.weight.device)  # SGLang's w8a8 or Marlin GEMM, where it runs
        dtype = next(self.parameters()).dtype
        built = []

        def copy(weight, bias=None):
            w = quantize(kind, weight, bias, kernels)
            prepare_for(w, dtype)  # packed for its kernel now (int4 drops its unpacked copy): less at peak
            built.append(w)
            return w

        for layer in self.model.layers:
            gate_up, down, qkv_diff, o_diff = _draft_linears(layer)
            layer.draft_mlp = (copy(gate_up.weight), copy(down.weight))
            layer.self_attn.draft_diff = (copy(qkv_diff.weight, qkv_diff.bias), copy(o_diff.weight, o_diff.bias))
        self.draft_lm_head = copy(self._lm_head_rows())
        # Freed only now, whole: had the copies and quantisation scratch been carved out of these
        # blocks as they were freed, the allocator could not hand the blocks back (empty_cache frees
        # whole segments only) and the KV pool would shrink by more than the copies' net size.
        for layer in self.model.layers:
            for linear in (layer.self_attn.qkv_proj_diff, layer.self_attn.o_proj_diff):
                linear.weight.data = linear.weight.data.new_empty(0)
        path_of = [path_for(w, dtype) for w in built]
        paths = sorted(set(path_of))
        emulated = [w for w, path in zip(built, path_of) if path == "emulated"]
        if cuda and emulated:  # dequantised copies: more memory and slower drafts than bf16 ones
            logger.warning("ORTHRUS %s drafts: %d of %d draft weights have no %s kernel for their shape or dtype "
                           "(e.g. %s in %s) and run an emulation, slower than bf16 drafts; use "
                           "ORTHRUS_DRAFT_WEIGHTS=bf16 or fp8 for this model", kind, len(emulated), len(built),
                           "Marlin" if kind.startswith("int4") else "fp8", emulated[0].shape, dtype)
        if cuda:  # reserved > allocated after empty_cache = blocks the KV pool cannot have
            torch.cuda.empty_cache()
            logger.info("ORTHRUS %s drafts (%s GEMM): %.2f GB of draft weights; net after freeing the bf16 "
                        "diffusion attention %.2f GB allocated, %.2f GB reserved", kind, "/".join(paths),
                        sum(w.nbytes() for w in built) / 1e9, (torch.cuda.memory_allocated() - before[0]) / 1e9,
                        (torch.cuda.memory_reserved() - before[1]) / 1e9)

    # ---- weights -------------------------------------------------------------------------
    STACKED = [  # (param, checkpoint name, shard); the _diff entries first so q_proj never matches q_proj_diff
        ("qkv_proj_diff", "q_proj_diff", "q"), ("qkv_proj_diff", "k_proj_diff", "k"),
        ("qkv_proj_diff", "v_proj_diff", "v"),
        ("qkv_proj", "q_proj", "q"), ("qkv_proj", "k_proj", "k"), ("qkv_proj", "v_proj", "v"),
        ("gate_up_proj", "gate_proj", 0), ("gate_up_proj", "up_proj", 1),
    ]

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        params = dict(self.named_parameters())
        loaded: set[str] = set()
        for name, tensor in weights:
            if "rotary_emb.inv_freq" in name:
                continue
            if name == "lm_head.weight" and self.config.tie_word_embeddings:
                continue  # the embedding is the head
            for param_name, ckpt_name, shard in self.STACKED:
                if f".{ckpt_name}." not in name:
                    continue
                target = name.replace(f".{ckpt_name}.", f".{param_name}.")
                param = params[target]
                param.weight_loader(param, tensor, shard)
                loaded.add(target)
                break
            else:
                if name not in params:
                    raise ValueError(f"checkpoint tensor {name!r} has no parameter in OrthrusLM")
                param = params[name]
                getattr(param, "weight_loader", default_weight_loader)(param, tensor)
                loaded.add(name)
        missing = sorted(set(params) - loaded - ({"lm_head.weight"} if self.config.tie_word_embeddings else set()))
        if missing:
            raise ValueError(f"checkpoint is missing {len(missing)} tensor(s), e.g. {missing[:5]}")
        self.post_load_weights()


EntryClass = OrthrusLM
