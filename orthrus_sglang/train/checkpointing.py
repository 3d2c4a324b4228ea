"""Resumable training state, and the final Orthrus checkpoint.

The training state holds only what the trajectory depends on: the step, the trainable
tensors, the optimizer's moments and the planned step count (the LR schedule). The data and
the anchors of step s are a pure function of (seed, s), so loading the state and continuing
reproduces an uninterrupted run exactly. Written to a temp file and renamed: a run killed
while saving keeps its previous state.

The final checkpoint copies every base tensor byte for byte from the starting checkpoint and
replaces only the ``*_diff`` tensors, so the AR view is bit-identical by construction.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..convert import TOKENIZER_FILES
from ..ref.loader import read_state_dict, save_state_dict

STATE_FILE = "train_state.pt"


def save_train_state(path: str | Path, *, step: int, planned_steps: int, trainable: list[tuple[str, torch.nn.Parameter]],
                     optimizer: torch.optim.Optimizer, fingerprint: dict, extra: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "planned_steps": planned_steps, "fingerprint": fingerprint, "extra": extra,
             "trainable": {n: p.detach().cpu() for n, p in trainable}, "optimizer": optimizer.state_dict()}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_train_state(path: str | Path, *, trainable: list[tuple[str, torch.nn.Parameter]],
                     optimizer: torch.optim.Optimizer, fingerprint: dict) -> dict:
    """Restore parameters and optimizer in place; returns the state's step, planned_steps and extra."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    changed = {k: (state["fingerprint"].get(k), v) for k, v in fingerprint.items() if state["fingerprint"].get(k) != v}
    if changed:
        details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ValueError(f"{path}: cannot resume, settings that shape the run changed ({details}); "
                         f"use a new --out or delete the state")
    names = {n for n, _ in trainable}
    if names != set(state["trainable"]):
        raise ValueError(f"{path}: cannot resume, the trainable tensors differ from this run's")
    with torch.no_grad():
        for n, p in trainable:
            p.copy_(state["trainable"][n].to(p.device))
    optimizer.load_state_dict(state["optimizer"])
    return {"step": state["step"], "planned_steps": state["planned_steps"], "extra": state["extra"]}


def write_orthrus_checkpoint(init_dir: str | Path, out_dir: str | Path, diff_tensors: dict[str, torch.Tensor],
                             *, block_size: int | None = None) -> Path:
    """init_dir's checkpoint with its ``*_diff`` tensors replaced (each cast to the dtype it had there)."""
    init_dir, out_dir = Path(init_dir), Path(out_dir)
    state = read_state_dict(init_dir)
    unknown = sorted(set(diff_tensors) - set(state))
    if unknown:
        raise ValueError(f"{init_dir}: has no tensor(s) {', '.join(unknown[:3])}")
    for name, tensor in diff_tensors.items():
        if "_diff" not in name:
            raise ValueError(f"refusing to overwrite base tensor {name}")
        state[name] = tensor.to(state[name].dtype).reshape(state[name].shape)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_state_dict(state, tmp)
    config = json.loads((init_dir / "config.json").read_text())
    if block_size is not None:
        config["block_size"] = block_size
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        if (init_dir / name).is_file():
            shutil.copy2(init_dir / name, tmp / name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir
