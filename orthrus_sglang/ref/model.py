"""The dual-view Orthrus model in plain PyTorch: one decoder, two sets of attention weights.

The AR view is an ordinary causal Qwen3/Llama decoder. The diffusion view swaps in the
``*_diff`` attention projections (embeddings, MLPs, norms and lm_head are shared) and lets
each block row attend to the whole committed AR prefix plus, non-causally, to every row of
its own block. Both views run through ``forward``; only the AR view writes the KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm as RMSNorm

from ..config import OrthrusConfig
from ..draft_weights import check_kind, draft_linear, prepare_for, quantize
from .kv_cache import KVCache

if TYPE_CHECKING:
    from ..draft_weights import DraftWeight

View = Literal["ar", "diff"]


@dataclass
class ForwardBatch:
    """Where a [bs, T] block of tokens sits: its cache rows and committed lengths.

    Invariant: row b's tokens are at positions cached_lens[b] + 0..T-1, and cache positions
    0..cached_lens[b]-1 of slots[b] hold that sequence's committed AR keys/values.
    """

    slots: torch.Tensor  # long [bs]
    cached_lens: torch.Tensor  # long [bs]
    num_tokens: int  # T

    @property
    def positions(self) -> torch.Tensor:  # long [bs, T]
        return self.cached_lens.unsqueeze(1) + torch.arange(self.num_tokens, device=self.cached_lens.device)

    @property
    def max_cached_len(self) -> int:
        return int(self.cached_lens.max())


class OrthrusAttention(nn.Module):
    def __init__(self, config: OrthrusConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        q_dim, kv_dim, bias = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, config.attention_bias
        for suffix in ("", "_diff"):
            setattr(self, f"q_proj{suffix}", nn.Linear(config.hidden_size, q_dim, bias=bias))
            setattr(self, f"k_proj{suffix}", nn.Linear(config.hidden_size, kv_dim, bias=bias))
            setattr(self, f"v_proj{suffix}", nn.Linear(config.hidden_size, kv_dim, bias=bias))
            setattr(self, f"o_proj{suffix}", nn.Linear(q_dim, config.hidden_size, bias=bias))
            if config.qk_norm:
                setattr(self, f"q_norm{suffix}", RMSNorm(self.head_dim, eps=config.rms_norm_eps))
                setattr(self, f"k_norm{suffix}", RMSNorm(self.head_dim, eps=config.rms_norm_eps))
        self.qk_norm = config.qk_norm
        self.draft: dict[str, DraftWeight] | None = None  # *_diff projections' fp8/int4 copies (draft_weights.py)

    def _linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name.endswith("_diff") and self.draft is not None:  # low-precision draft weights
            return draft_linear(x, self.draft[name])
        return getattr(self, name)(x)

    def _project(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], suffix: str):
        bs, T, _ = x.shape
        q = self._linear(f"q_proj{suffix}", x).view(bs, T, self.num_heads, self.head_dim)
        k = self._linear(f"k_proj{suffix}", x).view(bs, T, self.num_kv_heads, self.head_dim)
        v = self._linear(f"v_proj{suffix}", x).view(bs, T, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = getattr(self, f"q_norm{suffix}")(q), getattr(self, f"k_norm{suffix}")(k)
        q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), *rope)
        return q, k, v.transpose(1, 2)  # [bs, H, T, D] each

    def forward(self, x, rope, cache: KVCache, layer: int, batch: ForwardBatch, view: View) -> torch.Tensor:
        bs, T, _ = x.shape
        suffix = "" if view == "ar" else "_diff"
        q, k, v = self._project(x, rope, suffix)
        cached = batch.cached_lens.view(bs, 1, 1)
        if view == "ar":
            # Write the block first, then attend causally over prefix + block.
            cache.write(layer, batch.slots, batch.positions, k, v)
            keys, values = cache.read(layer, batch.slots, batch.max_cached_len + T)
            key_pos = torch.arange(keys.shape[2], device=x.device).view(1, 1, -1)
            mask = key_pos <= cached + torch.arange(T, device=x.device).view(1, T, 1)
        else:
            # Committed prefix from the cache (never written) + the whole block, non-causal.
            prefix_k, prefix_v = cache.read(layer, batch.slots, batch.max_cached_len)
            keys, values = torch.cat([prefix_k, k], dim=2), torch.cat([prefix_v, v], dim=2)
            key_pos = torch.arange(keys.shape[2], device=x.device).view(1, 1, -1)
            mask = (key_pos < cached) | (key_pos >= batch.max_cached_len)
            mask = mask.expand(bs, T, -1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask.unsqueeze(1), enable_gqa=True)
        return self._linear(f"o_proj{suffix}", out.transpose(1, 2).reshape(bs, T, -1))


class OrthrusDecoderLayer(nn.Module):
    def __init__(self, config: OrthrusConfig):
        super().__init__()
        self.self_attn = OrthrusAttention(config)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.draft_mlp: dict[str, DraftWeight] | None = None  # the draft pass's copies of the MLP

    def forward(self, x, rope, cache, layer, batch, view):
        x = x + self.self_attn(self.input_layernorm(x), rope, cache, layer, batch, view)
        h = self.post_attention_layernorm(x)
        if view == "diff" and self.draft_mlp is not None:
            w = self.draft_mlp
            act = self.mlp.act_fn(draft_linear(h, w["gate_proj"])) * draft_linear(h, w["up_proj"])
            return x + draft_linear(act, w["down_proj"])
        return x + self.mlp(h)


class OrthrusDecoder(nn.Module):
    def __init__(self, config: OrthrusConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(OrthrusDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)


class OrthrusForCausalLM(nn.Module):
    """Tensor names match the released checkpoints: ``model.layers.{i}.self_attn.q_proj_diff.weight``..."""

    def __init__(self, config: OrthrusConfig):
        super().__init__()
        self.config = config
        self.model = OrthrusDecoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.draft_lm_head: DraftWeight | None = None
        self.draft_weights = "bf16"  # what the draft pass reads (quantize_drafts)

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def new_cache(self, num_slots: int, max_len: int) -> KVCache:
        c = self.config
        return KVCache(num_layers=c.num_hidden_layers, num_slots=num_slots, max_len=max_len,
                       num_kv_heads=c.num_key_value_heads, head_dim=c.head_dim, dtype=self.dtype, device=self.device)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, cache: KVCache, batch: ForwardBatch, view: View = "ar",
                logit_rows: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids: long [bs, T]. Returns logits [bs, T, V], or [bs, 1, V] at ``logit_rows`` (long [bs])."""
        x = self.hidden_states(input_ids, cache, batch, view)
        if logit_rows is not None:
            x = x[torch.arange(x.shape[0], device=x.device), logit_rows].unsqueeze(1)
        return self.logits(x, view)

    @torch.inference_mode()
    def hidden_states(self, input_ids: torch.Tensor, cache: KVCache, batch: ForwardBatch,
                      view: View = "ar") -> torch.Tensor:
        """The last layer's output before the final norm, [bs, T, hidden]: feed rows of it to ``logits``."""
        x = self.model.embed_tokens(input_ids)
        rope = self.model.rotary_emb(x, batch.positions)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, rope, cache, i, batch, view)
        return x

    @torch.inference_mode()
    def logits(self, hidden: torch.Tensor, view: View = "ar") -> torch.Tensor:
        if view == "diff" and self.draft_lm_head is not None:  # low-precision draft weights (quantize_drafts)
            return draft_linear(self.model.norm(hidden), self.draft_lm_head)
        return self.lm_head(self.model.norm(hidden))

    def quantize_drafts(self, kind: str = "fp8") -> None:
        """The draft pass reads ``kind`` copies (draft_weights.py: fp8 or int4) of the MLP, the
        diffusion attention projections and lm_head, as SGLang's ORTHRUS_DRAFT_WEIGHTS=kind does;
        emulated here (dequantised matmuls). The verify pass is unchanged, so output is too."""
        if check_kind(kind) == self.draft_weights:
            return
        if self.draft_weights != "bf16" or kind == "bf16":
            raise ValueError(f"this model's drafts already read {self.draft_weights} weights; load it again for {kind}")
        built = []
        for layer in self.model.layers:
            attn = layer.self_attn
            attn.draft = {f"{p}_diff": quantize(kind, getattr(attn, f"{p}_diff").weight, getattr(attn, f"{p}_diff").bias)
                          for p in ("q_proj", "k_proj", "v_proj", "o_proj")}
            layer.draft_mlp = {p: quantize(kind, getattr(layer.mlp, p).weight, getattr(layer.mlp, p).bias)
                               for p in ("gate_proj", "up_proj", "down_proj")}
            built += [*attn.draft.values(), *layer.draft_mlp.values()]
        self.draft_lm_head = quantize(kind, self.lm_head.weight)
        for w in built + [self.draft_lm_head]:
            prepare_for(w, self.dtype)
        self.draft_weights = kind
