"""Everything a run needs before its first step: the starting checkpoint, the data, the eval prompts."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from ..convert import convert_to_orthrus
from ..model_dir import resolve_model_dir
from ..ref.loader import CheckpointError
from .config import TrainConfig
from .data import Document, read_documents


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available")
    return device


def compute_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def starting_checkpoint(cfg: TrainConfig) -> Path:
    """An Orthrus checkpoint as is, or a plain Qwen3/Llama one converted once into OUT/init."""
    model_dir = resolve_model_dir(cfg.model)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{model_dir}: no config.json")
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type == "orthrus":
        return model_dir
    if model_type not in ("qwen3", "llama"):
        raise CheckpointError(f"{model_dir}: model_type {model_type!r} is neither orthrus, qwen3 nor llama")
    init = Path(cfg.out) / "init"
    if not (init / "config.json").is_file():
        convert_to_orthrus(model_dir, init, block_size=cfg.block_size, mask_token_id=cfg.mask_token_id)
    return init


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{model_dir}: no usable tokenizer ({exc}); training distils from text prompts") from exc


def training_documents(cfg: TrainConfig, model, tokenizer, *, deadline: float | None) -> list[Document] | None:
    """--data as given, or the model's greedy answers to --prompts (distilled into OUT/data/train.jsonl).

    None when the deadline cut distillation short (rerun to continue).
    """
    if cfg.data:
        return read_documents(cfg.data)
    from .distill import distill
    from .prompts import encode_prompts, read_prompts

    prompts = encode_prompts(tokenizer, read_prompts(cfg.prompts, cfg.num_prompts, split="train", seed=cfg.seed))
    path = Path(cfg.out) / "data" / "train.jsonl"
    done = distill(model, prompts, path, max_new_tokens=cfg.gen_max_new_tokens, batch_size=cfg.gen_batch_size,
                   progress=cfg.progress, deadline=deadline)
    return read_documents(path) if done == len(prompts) else None


def eval_prompt_ids(cfg: TrainConfig, tokenizer) -> dict[str, list[list[int]]]:
    """Each held-out prompt set of --eval-prompts, by name (the first one first), as token ids."""
    from .prompts import encode_prompts, read_prompts

    return {name: encode_prompts(tokenizer, read_prompts(name, cfg.num_eval_prompts, split="heldout", seed=cfg.seed))
            for name in cfg.eval_prompt_sets}


def eval_key(set_index: int, set_name: str, block_size: int) -> str:
    """Where an eval's result goes in a history record: "B16" for the first set, "ood:B16" for the others."""
    return f"B{block_size}" if set_index == 0 else f"{Path(set_name).stem}:B{block_size}"


def documents_digest(docs: list[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(json.dumps([d.prompt_ids, d.answer_ids]).encode())
    return h.hexdigest()[:16]


def deadline_from(minutes: float) -> float | None:
    return time.monotonic() + 60 * minutes if minutes > 0 else None
