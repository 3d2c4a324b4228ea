"""Which weights train: the diffusion view only, as full matrices or as a low-rank delta.

``full``: every ``*_diff`` tensor trains directly. ``lora``: each diff projection's weight is
W0 + B @ A (B starts at zero, so the view starts exactly at W0, the AR copy); the diff norms
and biases, which are tiny, train in full. Every other tensor is frozen, so the AR view, and
with it the model's output, cannot change.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .config import VIEWS

DIFF_PROJECTIONS = ("q_proj_diff", "k_proj_diff", "v_proj_diff", "o_proj_diff")
DIFF_NORMS = ("q_norm_diff", "k_norm_diff")


class LowRankDelta(nn.Module):
    """weight -> weight + B @ A."""

    def __init__(self, out_features: int, in_features: int, rank: int, generator: torch.Generator):
        super().__init__()
        self.A = nn.Parameter(torch.randn(rank, in_features, generator=generator) / in_features**0.5)
        self.B = nn.Parameter(torch.zeros(out_features, rank))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.B @ self.A).to(weight.dtype)


def diff_modules(model) -> dict[str, nn.Module]:
    """Checkpoint prefix (``model.layers.{i}.self_attn.q_proj_diff``) -> module, for every diff module present."""
    out = {}
    for i, layer in enumerate(model.model.layers):
        for name in DIFF_PROJECTIONS + DIFF_NORMS:
            module = getattr(layer.self_attn, name, None)
            if module is not None:
                out[f"model.layers.{i}.self_attn.{name}"] = module
    return out


def make_trainable(model, view: str, *, lora_rank: int = 0, seed: int = 0) -> list[tuple[str, nn.Parameter]]:
    """Freeze everything, then open the diffusion view; returns the trainable (name, parameter) list."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if view == "lora" and lora_rank < 1:
        raise ValueError(f"--lora-rank must be >= 1 with view 'lora', got {lora_rank}")
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    for prefix, module in diff_modules(model).items():
        is_projection = prefix.rsplit(".", 1)[1] in DIFF_PROJECTIONS
        if view == "lora" and is_projection:
            delta = LowRankDelta(module.out_features, module.in_features, lora_rank, generator)
            parametrize.register_parametrization(module, "weight", delta.to(module.weight.device))
            if module.bias is not None:
                module.bias.requires_grad_(True)
        else:
            module.requires_grad_(True)
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


@torch.no_grad()
def diff_state(model) -> dict[str, torch.Tensor]:
    """Every diffusion-view tensor under its checkpoint name, low-rank deltas merged in (CPU copies)."""
    state = {}
    for prefix, module in diff_modules(model).items():
        state[f"{prefix}.weight"] = module.weight.detach().float().cpu().clone()
        if getattr(module, "bias", None) is not None:
            state[f"{prefix}.bias"] = module.bias.detach().float().cpu().clone()
    return state
