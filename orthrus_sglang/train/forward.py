"""The two passes of a training step, over the reference model's own modules.

``teacher_pass`` runs the frozen AR view over packed rows (causal inside each document) and
keeps every layer's AR keys/values and the final hidden states. ``draft_pass`` runs the
diffusion view over the diffusion stream (``Blocks``): each layer attends to that layer's AR
K/V of the block's document prefix and, non-causally, to its own block, as the inference
draft step does over the KV cache. Only ``draft_pass`` carries gradients.
"""

from __future__ import annotations

import torch

from ..ref.model import OrthrusForCausalLM
from .blocks import Blocks
from .data import Rows


def _layer_mlp(layer, x: torch.Tensor) -> torch.Tensor:
    return x + layer.mlp(layer.post_attention_layernorm(x))


@torch.no_grad()
def teacher_pass(model: OrthrusForCausalLM, rows: Rows, attention) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Per-layer AR (k, v), each [R, H_kv, T, D] (post-norm, post-RoPE), and the final normed hidden [R, T, H]."""
    decoder = model.model
    mask = attention.ar_mask(rows)
    x = decoder.embed_tokens(rows.ids)
    rope = decoder.rotary_emb(x, rows.positions)
    kv = []
    for layer in decoder.layers:
        attn = layer.self_attn
        q, k, v = attn._project(layer.input_layernorm(x), rope, "")
        k, v = k.to(attention.compute_dtype), v.to(attention.compute_dtype)
        kv.append((k, v))
        out = attention(q, k, v, mask)
        x = x + attn.o_proj(out.transpose(1, 2).flatten(2))
        x = _layer_mlp(layer, x)
    return kv, decoder.norm(x)


def draft_pass(model: OrthrusForCausalLM, blocks: Blocks, ar_kv: list[tuple[torch.Tensor, torch.Tensor]],
               attention, *, row_len: int) -> torch.Tensor:
    """Final normed hidden states of the diffusion stream, [R, N*B, H]."""
    decoder = model.model
    mask = attention.diff_mask(blocks, row_len)
    x = decoder.embed_tokens(blocks.ids)
    rope = decoder.rotary_emb(x, blocks.positions)
    for layer, (ar_k, ar_v) in zip(decoder.layers, ar_kv):
        attn = layer.self_attn
        q, k, v = attn._project(layer.input_layernorm(x), rope, "_diff")
        keys = torch.cat([ar_k, k.to(ar_k.dtype)], dim=2)
        values = torch.cat([ar_v, v.to(ar_v.dtype)], dim=2)
        out = attention(q, keys, values, mask)
        x = x + attn.o_proj_diff(out.transpose(1, 2).flatten(2))
        x = _layer_mlp(layer, x)
    return decoder.norm(x)
