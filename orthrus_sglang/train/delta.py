"""The compact trained-view artefact: the diffusion view as a low-rank delta from the AR weights.

A trained diffusion view is a full copy of the attention weights (for SmolLM2-135M, 26.5M
parameters: 106 MB in fp32). What training changes is a delta from the AR twin it started
from, and most of that delta lives in a few directions. The artefact stores, for every diff
projection W_diff = W_ar + b @ a, the rank-r factors of the truncated SVD of W_diff - W_ar
(fp16, or int8 with one fp16 scale per row), and the tiny diff norms and biases as they are.

One safetensors file; its metadata (``orthrus_view``, JSON) names the format, the rank, the
bits, the block size trained at, and ``base_sha256``: a digest of every AR tensor of the base
checkpoint, so the view is never silently applied to other weights.

    apply_view(orthrus_checkpoint_dir, view_path)   # demo build: after orthrus convert
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "orthrus-diff-view-delta"
VERSION = 1
PROJECTIONS = ("q_proj_diff", "k_proj_diff", "v_proj_diff", "o_proj_diff")


class ViewMismatch(ValueError):
    """The view was trained on other base weights than the checkpoint it is applied to."""


def base_sha256(state: dict[str, torch.Tensor]) -> str:
    """Digest of the AR view: every non-``_diff`` tensor (names sorted, values as float32)."""
    h = hashlib.sha256()
    for name in sorted(n for n in state if "_diff" not in n):
        h.update(name.encode())
        h.update(state[name].detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _ar_twin(name: str) -> str:
    return name.replace("_diff", "")


def _quantize(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 rows with one scale each: t ~ q * scale."""
    scale = t.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
    return torch.round(t / scale).clamp(-127, 127).to(torch.int8), scale.to(torch.float16)


def _is_projection_weight(name: str) -> bool:
    return name.endswith(".weight") and name.split(".")[-2] in PROJECTIONS


def decompose(base_state: dict[str, torch.Tensor], diff_state: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """SVD (U, S, Vh) of every projection's delta from its AR twin: compute once, truncate at many ranks."""
    return {name: torch.linalg.svd(value.detach().double().cpu() - base_state[_ar_twin(name)].double().cpu(),
                                   full_matrices=False)
            for name, value in diff_state.items() if _is_projection_weight(name)}


def make_view(base_state: dict[str, torch.Tensor], diff_state: dict[str, torch.Tensor], *, rank: int, bits: int,
              meta: dict | None = None, svd: dict[str, tuple] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Compress a trained diff view (``diff_state``: checkpoint names -> tensors) against base_state's AR weights.

    ``svd``: ``decompose(base_state, diff_state)``, when several ranks are tried.
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    svd = svd or decompose(base_state, diff_state)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in sorted(diff_state.items()):
        if not _is_projection_weight(name):  # norms, biases: tiny, stored as they are
            tensors[f"{name}.value"] = value.detach().float().cpu().contiguous()
            continue
        U, S, Vh = svd[name]
        r = min(rank, S.numel())
        root = S[:r].sqrt()
        b, a = (U[:, :r] * root).float(), (root.unsqueeze(1) * Vh[:r]).float()  # balanced factors quantise alike
        if bits == 16:
            tensors[f"{name}.b"], tensors[f"{name}.a"] = b.half(), a.half()
        else:
            (tensors[f"{name}.b"], tensors[f"{name}.b_scale"]), (tensors[f"{name}.a"], tensors[f"{name}.a_scale"]) = (
                _quantize(b), _quantize(a))
    info = {"format": FORMAT, "version": VERSION, "rank": rank, "bits": bits, "base_sha256": base_sha256(base_state),
            **(meta or {})}
    return tensors, info


def save_view(path: str | Path, tensors: dict[str, torch.Tensor], info: dict) -> Path:
    """Write the artefact (and a readable copy of its metadata beside it, ``.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({n: t.contiguous() for n, t in tensors.items()}, str(path), metadata={"orthrus_view": json.dumps(info)})
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    return path


def load_view(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such view file")
    with safe_open(str(path), framework="pt") as f:
        info = json.loads((f.metadata() or {}).get("orthrus_view", "null") or "null")
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise ValueError(f"{path}: not an Orthrus view artefact (no '{FORMAT}' metadata)")
        if info.get("version") != VERSION:
            raise ValueError(f"{path}: view format version {info.get('version')}, this code reads {VERSION}")
        return {n: f.get_tensor(n) for n in f.keys()}, info


def view_diff_state(tensors: dict[str, torch.Tensor], base_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Decompress: checkpoint name -> diff tensor (float32), from the artefact and the base's AR weights."""
    out = {}
    for key, t in tensors.items():
        if key.endswith(".value"):
            out[key[: -len(".value")]] = t.float()
        elif key.endswith(".b"):
            name = key[: -len(".b")]
            a, b = tensors[f"{name}.a"].float(), t.float()
            if f"{name}.a_scale" in tensors:
                a, b = a * tensors[f"{name}.a_scale"].float(), b * tensors[f"{name}.b_scale"].float()
            out[name] = base_state[_ar_twin(name)].float() + b @ a
    return out


def view_nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def apply_view(checkpoint_dir: str | Path, view_path: str | Path, *, check_base: bool = True) -> dict:
    """Overwrite the ``*_diff`` tensors of an Orthrus checkpoint directory with the view; returns its metadata.

    Raises ViewMismatch (before writing anything) when the checkpoint's AR weights are not the
    ones the view was trained on, unless check_base is False.
    """
    from ..ref.loader import read_state_dict, save_state_dict

    checkpoint_dir = Path(checkpoint_dir)
    tensors, info = load_view(view_path)
    state = read_state_dict(checkpoint_dir)
    if check_base and base_sha256(state) != info["base_sha256"]:
        raise ViewMismatch(f"{view_path} was trained on other base weights than {checkpoint_dir} "
                           f"(base_sha256 {info['base_sha256'][:12]}... expected, {base_sha256(state)[:12]}... found)")
    diff = view_diff_state(tensors, state)
    missing = sorted(set(diff) - set(state))
    if missing:
        raise ValueError(f"{checkpoint_dir}: the view has tensors the checkpoint lacks: {', '.join(missing[:3])}")
    for name, value in diff.items():
        state[name] = value.to(state[name].dtype).reshape(state[name].shape)
    # Written aside first: an interrupted apply leaves the old weights in place, never half of them.
    staging = checkpoint_dir / ".view-staging"
    shutil.rmtree(staging, ignore_errors=True)
    save_state_dict(state, staging)
    for f in list(checkpoint_dir.glob("model*.safetensors")) + list(checkpoint_dir.glob("model.safetensors.index.json")):
        f.unlink()
    for f in staging.iterdir():
        os.replace(f, checkpoint_dir / f.name)
    staging.rmdir()
    return info
