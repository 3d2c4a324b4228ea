"""Checkpoints in the released on-disk format: names, sharding, Auto registration, clear errors."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from orthrus_sglang.ref.loader import CheckpointError, load_model, read_state_dict
from orthrus_sglang.ref.model import ForwardBatch
from orthrus_sglang.testing import random_model, tiny_config, write_tiny_checkpoint

RELEASED_LAYER_NAMES = {
    f"model.layers.0.{n}.weight"
    for n in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "self_attn.q_norm",
              "self_attn.k_norm", "self_attn.q_proj_diff", "self_attn.k_proj_diff", "self_attn.v_proj_diff",
              "self_attn.o_proj_diff", "self_attn.q_norm_diff", "self_attn.k_norm_diff", "mlp.gate_proj",
              "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"]
}


def logits_of(model, ids):
    cache = model.new_cache(1, ids.shape[1])
    return model(ids, cache, ForwardBatch(torch.tensor([0]), torch.tensor([0]), ids.shape[1]), "ar")


def test_released_tensor_names(tiny_qwen3):
    names = set(read_state_dict(tiny_qwen3))
    assert {n for n in names if n.startswith("model.layers.0.")} == RELEASED_LAYER_NAMES
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} <= names


def test_llama_backbone_has_no_qk_norm_and_ties_embeddings(tiny_llama):
    names = set(read_state_dict(tiny_llama))
    assert not any("q_norm" in n or "k_norm" in n for n in names)
    assert "lm_head.weight" not in names and "model.layers.0.self_attn.q_proj_diff.bias" in names


@pytest.mark.parametrize("shard_bytes", [2 << 30, 40_000])
def test_round_trip_single_and_sharded(tmp_path, shard_bytes):
    config = tiny_config(vocab_size=260, mask_token_id=259)
    original = random_model(config, seed=7)
    path = write_tiny_checkpoint(tmp_path, seed=7, max_shard_bytes=shard_bytes)
    if shard_bytes < 1 << 20:
        index = json.loads((path / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 1
    loaded = load_model(path)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    assert torch.equal(logits_of(loaded, ids), logits_of(original, ids))
    for name, tensor in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_autoconfig_reads_orthrus_without_trust_remote_code_in_a_fresh_process(tiny_qwen3):
    code = ("import orthrus_sglang; from transformers import AutoConfig; "
            f"c = AutoConfig.from_pretrained({str(tiny_qwen3)!r}); print(type(c).__name__, c.block_size, c.mask_token_id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["OrthrusConfig", "4", "259"]


def corrupt(path, edit):
    tensors = load_file(str(path / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(path / "model.safetensors"))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("model.layers.1.self_attn.k_proj_diff.weight"),
     "missing tensor(s): model.layers.1.self_attn.k_proj_diff.weight"),
    (lambda t: t.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(3, 3)}),
     "model.layers.0.mlp.up_proj.weight: expected (128, 64), got (3, 3)"),
    (lambda t: t.update({"model.layers.0.self_attn.x_proj_diff.weight": torch.zeros(3)}),
     "unexpected tensor(s): model.layers.0.self_attn.x_proj_diff.weight"),
])
def test_malformed_weights_fail_naming_the_tensor(tmp_path, edit, message):
    path = write_tiny_checkpoint(tmp_path)
    corrupt(path, edit)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_model(path)


@pytest.mark.parametrize("change, message", [
    ({"block_size": 0}, "block_size must be an integer >= 1"),
    ({"mask_token_id": 260}, "mask_token_id 260 is outside the vocabulary"),
    ({"backbone": "gpt2"}, "backbone must be one of"),
    ({"num_key_value_heads": 3}, "not a multiple of num_key_value_heads"),
    ({"model_type": "qwen3"}, "model_type is 'qwen3', expected 'orthrus'"),
    ({"block_size": "eight"}, "block_size"),
])
def test_bad_config_fails_with_a_clear_message(tmp_path, change, message):
    path = write_tiny_checkpoint(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config.update(change)
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_missing_files_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path)
    path = write_tiny_checkpoint(tmp_path / "m")
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(path)
    path = write_tiny_checkpoint(tmp_path / "n")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(path)


def test_missing_shard_fails_clearly(tmp_path):
    path = write_tiny_checkpoint(tmp_path, max_shard_bytes=40_000)
    next(path.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="shard model-00002-of-.* is missing"):
        load_model(path)
