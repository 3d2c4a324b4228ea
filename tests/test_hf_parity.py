"""The AR view is the plain decoder: logits equal transformers' Qwen3/Llama on the same weights."""

import pytest
import torch
from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

from orthrus_sglang.convert import convert_to_orthrus
from orthrus_sglang.ref.engine import Engine
from orthrus_sglang.ref.loader import load_model
from orthrus_sglang.ref.model import ForwardBatch

SHAPE = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=256, eos_token_id=5)


def hf_model(backbone: str, **extra):
    torch.manual_seed(0)
    if backbone == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**SHAPE, **extra))
    else:
        model = LlamaForCausalLM(LlamaConfig(**SHAPE, **extra))
    with torch.no_grad():  # HF's init is near-uniform; spread the weights so logits differ a lot
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.08)
    return model.eval()


CASES = [("qwen3", {}), ("qwen3", {"tie_word_embeddings": True, "attention_bias": True}),
         ("llama", {"tie_word_embeddings": True}), ("llama", {"attention_bias": True, "mlp_bias": True,
                                                              "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5,
                                                                                  "factor": 8.0, "low_freq_factor": 1.0,
                                                                                  "high_freq_factor": 4.0,
                                                                                  "original_max_position_embeddings": 64}})]


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}-{'-'.join(c[1]) or 'plain'}")
def hf_and_orthrus(request, tmp_path):
    backbone, extra = request.param
    hf = hf_model(backbone, **extra)
    hf.save_pretrained(tmp_path / "plain")
    convert_to_orthrus(tmp_path / "plain", tmp_path / "orthrus", block_size=4, mask_token_id=7)
    return hf, tmp_path / "orthrus"


def test_converted_config_loads_with_autoconfig(hf_and_orthrus):
    hf, path = hf_and_orthrus
    config = AutoConfig.from_pretrained(str(path))
    assert config.model_type == "orthrus" and config.architectures == ["OrthrusLM"]
    assert config.backbone == hf.config.model_type and config.block_size == 4 and config.mask_token_id == 7
    assert config.tie_word_embeddings == hf.config.tie_word_embeddings


def test_prefill_logits_match_transformers_ragged_batch(hf_and_orthrus):
    hf, path = hf_and_orthrus
    model = load_model(path)
    gen = torch.Generator().manual_seed(1)
    lengths = [11, 4, 17]
    prompts = [torch.randint(0, 300, (n,), generator=gen) for n in lengths]
    ids = torch.zeros(3, max(lengths), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = p
    cache = model.new_cache(3, 32)
    batch = ForwardBatch(slots=torch.tensor([2, 0, 1]), cached_lens=torch.zeros(3, dtype=torch.long), num_tokens=ids.shape[1])
    ours = model(ids, cache, batch, "ar")
    for i, p in enumerate(prompts):
        with torch.no_grad():
            ref = hf(p.unsqueeze(0)).logits[0]
        torch.testing.assert_close(ours[i, : len(p)], ref, rtol=1e-4, atol=1e-4)


def test_cached_decode_logits_match_transformers(hf_and_orthrus):
    """Prefill then one-token AR steps through the preallocated cache = one full HF forward."""
    hf, path = hf_and_orthrus
    model = load_model(path)
    seq = torch.randint(0, 300, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = hf(seq).logits[0]
    cache = model.new_cache(2, 32)
    slot = torch.tensor([1])
    out = [model(seq[:, :8], cache, ForwardBatch(slot, torch.tensor([0]), 8), "ar")[0]]
    for pos in range(8, 20):
        out.append(model(seq[:, pos : pos + 1], cache, ForwardBatch(slot, torch.tensor([pos]), 1), "ar")[0])
    torch.testing.assert_close(torch.cat(out), ref, rtol=1e-4, atol=1e-4)


def test_ar_greedy_matches_transformers_generate(hf_and_orthrus):
    hf, path = hf_and_orthrus
    prompt = [3, 17, 42, 99, 250, 8]
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[0, len(prompt):].tolist()
    from orthrus_sglang import SamplingParams

    engine = Engine(path, max_batch_size=2)
    params = SamplingParams(max_new_tokens=24, ignore_eos=True)
    assert engine.generate([prompt], params, ar_only=True)[0].token_ids == ref
    assert engine.generate([prompt], params)[0].token_ids == ref
