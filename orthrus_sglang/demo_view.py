"""The demo model's trained diffusion view, shipped in the package as a compact artefact.

``demo.py`` builds the plain SmolLM2 checkpoint and converts it (diffusion view = a copy of the
AR attention); ``apply_demo_view`` then swaps in the trained view, so the quickstart drafts with
weights that were trained to be accepted. The artefact (orthrus_sglang/views/, written by
scripts/gpu_train_demo.sh) is a low-rank delta from the AR weights plus the digest of the base
weights it was trained on; see orthrus_sglang/train/delta.py.
"""

from __future__ import annotations

import json
from pathlib import Path

VIEW_FILE = Path(__file__).parent / "views" / "smollm2-135m-instruct-view.safetensors"


def demo_view_info() -> dict | None:
    """The shipped view's metadata (block size it was trained at, held-out tau, rank...), or None if none ships."""
    meta = VIEW_FILE.with_suffix(".json")
    return json.loads(meta.read_text()) if VIEW_FILE.is_file() and meta.is_file() else None


def apply_demo_view(orthrus_dir: str | Path, *, view_file: str | Path | None = None) -> dict | None:
    """Give the converted demo checkpoint in ``orthrus_dir`` the trained diffusion view, in place.

    Returns the view's metadata, or None when no view ships (the checkpoint is left as converted).
    Raises train.delta.ViewMismatch if the checkpoint's AR weights are not the ones the view
    was trained on (a changed GGUF or dequantization): retrain, rather than draft with a view
    that was fitted to other weights.
    """
    path = Path(view_file) if view_file is not None else VIEW_FILE
    if not path.is_file():
        return None
    from .train.delta import apply_view

    return apply_view(orthrus_dir, path)
