"""HF-layout checkpoints: config.json + single or sharded safetensors (with index json).

Loading validates everything once, at load, and names the problem: a missing or unexpected
tensor, a wrong shape, a bad config field. Saving writes the same layout (sharded above
``max_shard_bytes``), so what we write is what real users load.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import ConfigError, OrthrusConfig
from .model import OrthrusForCausalLM

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded as an Orthrus model."""


def load_config(model_dir: str | Path) -> OrthrusConfig:
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{model_dir}: no config.json")
    try:
        raw = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from exc
    model_type = raw.get("model_type")
    if model_type != OrthrusConfig.model_type:
        hint = " (convert it first: `orthrus convert SRC DST`)" if model_type in ("qwen3", "llama") else ""
        raise CheckpointError(f"{config_path}: model_type is {model_type!r}, expected 'orthrus'{hint}")
    try:
        return OrthrusConfig.from_dict(raw)
    except ConfigError as exc:
        raise CheckpointError(f"{config_path}: {exc}") from exc
    except (TypeError, ValueError) as exc:  # wrong field types, rejected by the strict config class
        raise CheckpointError(f"{config_path}: invalid config: {exc}") from exc


def weight_files(model_dir: str | Path) -> list[Path]:
    model_dir = Path(model_dir)
    if (model_dir / INDEX_FILE).is_file():
        index = json.loads((model_dir / INDEX_FILE).read_text())
        files = sorted({model_dir / name for name in index["weight_map"].values()})
    elif (model_dir / SINGLE_FILE).is_file():
        files = [model_dir / SINGLE_FILE]
    else:
        raise CheckpointError(f"{model_dir}: no {SINGLE_FILE} and no {INDEX_FILE}")
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"{model_dir}: shard {f.name} listed in {INDEX_FILE} is missing")
    return files


def read_state_dict(model_dir: str | Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for f in weight_files(model_dir):
        with safe_open(str(f), framework="pt") as shard:
            for name in shard.keys():
                tensors[name] = shard.get_tensor(name)
    return tensors


def check_state_dict(expected: dict[str, torch.Size], found: dict[str, torch.Tensor], *, tied: bool, where: str) -> None:
    optional = {"lm_head.weight"} if tied else set()
    missing = sorted(set(expected) - set(found) - optional)
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{n}: expected {tuple(expected[n])}, got {tuple(found[n].shape)}"
             for n in sorted(set(expected) & set(found)) if found[n].shape != expected[n]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    if wrong:
        problems.append("wrong shape: " + "; ".join(wrong[:5]))
    if problems:
        raise CheckpointError(f"{where}: " + " | ".join(problems))


def load_model(model_dir: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               config: OrthrusConfig | None = None) -> OrthrusForCausalLM:
    config = config or load_config(model_dir)
    with torch.device("meta"):
        model = OrthrusForCausalLM(config)
    expected = {n: t.shape for n, t in model.state_dict().items()}
    state = read_state_dict(model_dir)
    check_state_dict(expected, state, tied=config.tie_word_embeddings, where=str(model_dir))
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    state = {n: t.to(device=device, dtype=dtype) for n, t in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    # The rotary inverse frequencies are a non-persistent buffer: rebuild it off the meta device.
    model.model.rotary_emb = type(model.model.rotary_emb)(config).to(device)
    return model.eval()


def save_state_dict(state: dict[str, torch.Tensor], model_dir: str | Path, *, max_shard_bytes: int = 2 << 30) -> None:
    """Write ``state`` as one file, or as shards plus an index when it exceeds max_shard_bytes."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {n: t.detach().contiguous().cpu() for n, t in state.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(model_dir / SINGLE_FILE), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(model_dir / name), metadata={"format": "pt"})
        weight_map.update({t: name for t in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (model_dir / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def save_model(model: OrthrusForCausalLM, model_dir: str | Path, **kwargs) -> None:
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_state_dict(state, model_dir, **kwargs)
    model.config.save_pretrained(model_dir)
