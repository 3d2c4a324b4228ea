"""Model shapes for random-weight (``--load-format dummy``) SGLang runs: a config.json, no weights."""

from __future__ import annotations

import json
from pathlib import Path

SHAPES = {
    "qwen3-8b": dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                     tie_word_embeddings=False),
    # the quickstart demo's (SmolLM2-135M): a model whose step is host-bound, where the per-step launches
    # (e.g. the sampled acceptance) show; its special ids, as the demo checkpoint has them
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                         tie_word_embeddings=True, mask_token_id=4, eos_token_id=2, bos_token_id=1),
}
MASK_TOKEN_ID = 151669  # Qwen3's first unused id; what the released Orthrus checkpoints use
# Qwen3's special ids: every shape's unless it names its own
SPECIAL_IDS = dict(mask_token_id=MASK_TOKEN_ID, eos_token_id=151645, bos_token_id=151643)


def _fields(shape: str) -> dict:
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {sorted(SHAPES)}")
    return {**SPECIAL_IDS, **SHAPES[shape]}


def write_shape(shape: str, block_size: int, root: Path) -> Path:
    """An Orthrus config.json of a named shape (OrthrusLM: serves AR and ORTHRUS alike)."""
    config = dict(architectures=["OrthrusLM"], model_type="orthrus", backbone="qwen3", rms_norm_eps=1e-6,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, hidden_act="silu",
                  attention_bias=False, torch_dtype="bfloat16", block_size=block_size, **_fields(shape))
    path = Path(root) / f"{shape}-b{block_size}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


def write_plain_qwen3_shape(shape: str, root: Path) -> Path:
    """The same shape as SGLang's own Qwen3ForCausalLM: the AR baseline a user would otherwise serve."""
    fields = _fields(shape)
    fields.pop("mask_token_id")
    config = dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", rms_norm_eps=1e-6, rope_theta=1000000.0,
                  hidden_act="silu", attention_bias=False, torch_dtype="bfloat16", **fields)
    path = Path(root) / f"{shape}-qwen3"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    return path
