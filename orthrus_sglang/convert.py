"""Give a plain Qwen3 or Llama checkpoint a diffusion view initialised from its AR attention.

The result is a valid Orthrus checkpoint whose AR view is the original model, token for
token. Its diffusion view starts as a copy of the AR attention (the starting point for
training and for demos), so its acceptance is low until that view is trained.
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

from transformers import AutoConfig

from .config import OrthrusConfig
from .ref.loader import CheckpointError, check_state_dict, read_state_dict, save_state_dict

AR_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json", "generation_config.json")
# The mask token of the released Qwen3 Orthrus checkpoints (an unused id of Qwen3's padded vocabulary).
QWEN3_MASK_TOKEN_ID = 151669


def orthrus_config_from(src_dir: str | Path, *, block_size: int, mask_token_id: int | None) -> OrthrusConfig:
    src = AutoConfig.from_pretrained(str(src_dir))
    if src.model_type not in ("qwen3", "llama"):
        raise CheckpointError(f"{src_dir}: model_type {src.model_type!r} cannot carry a diffusion view (qwen3 or llama)")
    if mask_token_id is None:
        if src.model_type == "qwen3" and src.vocab_size > QWEN3_MASK_TOKEN_ID:
            mask_token_id = QWEN3_MASK_TOKEN_ID
        else:
            raise CheckpointError(f"{src_dir}: pass mask_token_id (a token id the model never needs to emit)")
    known = {f.name for f in fields(OrthrusConfig)}
    values = {k: v for k, v in src.to_dict().items() if k in known and k not in ("model_type", "architectures")}
    values["head_dim"] = getattr(src, "head_dim", None) or src.hidden_size // src.num_attention_heads
    values["layer_types"] = None  # rebuilt from num_hidden_layers
    return OrthrusConfig(**values, block_size=block_size, mask_token_id=mask_token_id, backbone=src.model_type,
                         architectures=["OrthrusLM"])


def convert_to_orthrus(src_dir: str | Path, dst_dir: str | Path, *, block_size: int = 32,
                       mask_token_id: int | None = None) -> Path:
    """Write an Orthrus checkpoint to dst_dir from the plain HF checkpoint in src_dir."""
    import torch

    from .ref.model import OrthrusForCausalLM

    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    config = orthrus_config_from(src_dir, block_size=block_size, mask_token_id=mask_token_id)
    state = read_state_dict(src_dir)
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    for name in list(state):
        parts = name.split(".")  # model.layers.{i}.self_attn.{proj}[.weight|.bias]
        if len(parts) >= 5 and parts[3] == "self_attn" and parts[4] in AR_ATTENTION:
            state[".".join(parts[:4] + [parts[4] + "_diff"] + parts[5:])] = state[name].clone()
    with torch.device("meta"):
        expected = {n: t.shape for n, t in OrthrusForCausalLM(config).state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight")
    state = {n: t for n, t in state.items() if not n.endswith("rotary_emb.inv_freq")}
    check_state_dict(expected, state, tied=config.tie_word_embeddings, where=str(src_dir))
    save_state_dict(state, dst_dir)
    config.save_pretrained(str(dst_dir))
    for name in TOKENIZER_FILES:
        if (src_dir / name).is_file():
            shutil.copy2(src_dir / name, dst_dir / name)
    return dst_dir
