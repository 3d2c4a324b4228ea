"""The diffusion view against a naive per-sequence implementation of the paper's draft step (arXiv 2605.12825).

Each block row must see every committed AR key of its own sequence and all B diff keys of its
block (non-causal), and nothing else: not the other sequences' rows, not stale cache entries
past the committed length, not the cache of another slot.
"""

import math

import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from orthrus_sglang.ref.loader import load_model
from orthrus_sglang.ref.model import ForwardBatch


def naive_attention(q, k, v):  # q [H, T, D], k/v [Hkv, S, D], no mask
    rep = q.shape[0] // k.shape[0]
    k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v


def project(attn, x, positions, rope_module, suffix):
    T = x.shape[0]
    q = getattr(attn, "q_proj" + suffix)(x).view(T, attn.num_heads, attn.head_dim)
    k = getattr(attn, "k_proj" + suffix)(x).view(T, attn.num_kv_heads, attn.head_dim)
    v = getattr(attn, "v_proj" + suffix)(x).view(T, attn.num_kv_heads, attn.head_dim)
    if attn.qk_norm:
        q, k = getattr(attn, "q_norm" + suffix)(q), getattr(attn, "k_norm" + suffix)(k)
    cos, sin = rope_module(x, positions.unsqueeze(0))
    q, k = apply_rotary_pos_emb(q.transpose(0, 1).unsqueeze(0), k.transpose(0, 1).unsqueeze(0), cos, sin)
    return q[0], k[0], v.transpose(0, 1)


@torch.no_grad()
def naive_draft_logits(model, prefix: list[int], block: list[int]) -> torch.Tensor:
    m = model.model
    L, B = len(prefix), len(block)
    h_ar = m.embed_tokens(torch.tensor(prefix))
    h = m.embed_tokens(torch.tensor(block))
    for layer in m.layers:
        attn = layer.self_attn
        # AR view over the prefix, causal: gives this layer's committed keys/values.
        x = layer.input_layernorm(h_ar)
        q, k_ar, v_ar = project(attn, x, torch.arange(L), m.rotary_emb, "")
        causal = torch.full((L, L), float("-inf")).triu(1)
        rep = attn.num_heads // attn.num_kv_heads
        scores = q @ k_ar.repeat_interleave(rep, 0).transpose(-1, -2) / math.sqrt(attn.head_dim) + causal
        out = torch.softmax(scores, -1) @ v_ar.repeat_interleave(rep, 0)
        h_ar = h_ar + attn.o_proj(out.transpose(0, 1).reshape(L, -1))
        h_ar = h_ar + layer.mlp(layer.post_attention_layernorm(h_ar))
        # Diffusion view over the block: all prefix keys + all block keys, no mask.
        x = layer.input_layernorm(h)
        q, k, v = project(attn, x, torch.arange(L, L + B), m.rotary_emb, "_diff")
        out = naive_attention(q, torch.cat([k_ar, k], 1), torch.cat([v_ar, v], 1))
        h = h + attn.o_proj_diff(out.transpose(0, 1).reshape(B, -1))
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    return model.lm_head(m.norm(h))


def test_batched_draft_logits_equal_naive_per_sequence(tiny_qwen3, tiny_llama):
    for path in (tiny_qwen3, tiny_llama):
        model = load_model(path)
        B, mask = 5, model.config.mask_token_id
        gen = torch.Generator().manual_seed(3)
        prefixes = [torch.randint(0, 256, (n,), generator=gen).tolist() for n in (9, 3, 14)]
        slots = torch.tensor([3, 0, 2])
        cache = model.new_cache(4, 32)
        cache.keys.normal_(generator=gen)  # junk everywhere: only committed entries may be read
        cache.values.normal_(generator=gen)
        # Prefill each committed prefix except its last token t (the block's row 0).
        for slot, prefix in zip(slots, prefixes):
            ids = torch.tensor([prefix[:-1]])
            model(ids, cache, ForwardBatch(slot.view(1), torch.tensor([0]), ids.shape[1]), "ar")
        cached_lens = torch.tensor([len(p) - 1 for p in prefixes])
        blocks = torch.tensor([[p[-1]] + [mask] * (B - 1) for p in prefixes])
        ours = model(blocks, cache, ForwardBatch(slots, cached_lens, B), "diff")
        for i, prefix in enumerate(prefixes):
            ref = naive_draft_logits(model, prefix[:-1], blocks[i].tolist())
            torch.testing.assert_close(ours[i], ref, rtol=1e-4, atol=1e-4)


def test_diffusion_pass_never_writes_the_cache(tiny_qwen3):
    model = load_model(tiny_qwen3)
    cache = model.new_cache(2, 32)
    model(torch.tensor([[5, 6, 7, 8]]), cache, ForwardBatch(torch.tensor([1]), torch.tensor([0]), 4), "ar")
    keys, values = cache.keys.clone(), cache.values.clone()
    block = torch.tensor([[9] + [model.config.mask_token_id] * 7])
    model(block, cache, ForwardBatch(torch.tensor([1]), torch.tensor([4]), 8), "diff")
    assert torch.equal(cache.keys, keys) and torch.equal(cache.values, values)
