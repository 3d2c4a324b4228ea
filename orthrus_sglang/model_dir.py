"""Where a ``--model`` argument points: a local checkpoint directory, the demo model's id (built once,
orthrus_sglang/demo.py) or a Hugging Face hub id. Kept out of ref/loader.py so that the loader,
which the demo's build uses, does not know the demo."""

from __future__ import annotations

from pathlib import Path

from .ref.loader import CheckpointError

HUB_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]


def resolve_model_dir(path_or_id: str | Path) -> Path:
    """A local directory as is; the demo model's id builds it once; anything else is a hub id."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    from .demo import ensure_demo_model, is_demo_model_id

    if is_demo_model_id(str(path_or_id)):
        return ensure_demo_model()
    if path.exists() or str(path_or_id).startswith((".", "/", "~")) or str(path_or_id).count("/") != 1:
        raise CheckpointError(f"model {str(path_or_id)!r} is not a directory nor a hub id of the form 'org/name'")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(path_or_id), allow_patterns=HUB_FILES))
    except Exception as exc:  # network, auth, missing repo: one clear message for all
        raise CheckpointError(f"could not fetch {path_or_id!r} from the Hugging Face hub: {exc}") from exc
