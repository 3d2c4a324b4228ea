"""OrthrusConfig: a Qwen3 config plus the diffusion view's two fields.

Registered with transformers' Auto classes on import of ``orthrus_sglang``, so a released
checkpoint directory loads with ``AutoConfig.from_pretrained(path)`` and no
``trust_remote_code``. ``backbone`` says which decoder carries the diffusion view:
``"qwen3"`` (q/k RMSNorm per head) or ``"llama"`` (no q/k norm, optional MLP bias).
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, Qwen3Config

BACKBONES = ("qwen3", "llama")


class ConfigError(ValueError):
    """A checkpoint's config.json cannot describe a working Orthrus model."""


@strict
class OrthrusConfig(Qwen3Config):
    model_type = "orthrus"

    block_size: int = 32
    mask_token_id: int | None = 151669  # the released Qwen3 checkpoints' mask id
    backbone: str = "qwen3"
    mlp_bias: bool = False

    def __post_init__(self, **kwargs):
        if not self.architectures:
            self.architectures = ["OrthrusLM"]
        super().__post_init__(**kwargs)
        self.validate_orthrus()

    @property
    def qk_norm(self) -> bool:
        return self.backbone == "qwen3"

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        eos = self.eos_token_id
        if eos is None:
            return ()
        return tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)

    def validate_orthrus(self) -> None:
        """Fail at load, with the field's name, rather than deep inside a decode step."""
        problems = []
        if not isinstance(self.block_size, int) or self.block_size < 1:
            problems.append(f"block_size must be an integer >= 1, got {self.block_size!r}")
        if self.mask_token_id is None:
            problems.append("mask_token_id is missing (the diffusion view needs a mask token)")
        elif not 0 <= self.mask_token_id < self.vocab_size:
            problems.append(f"mask_token_id {self.mask_token_id} is outside the vocabulary [0, {self.vocab_size})")
        if self.backbone not in BACKBONES:
            problems.append(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "head_dim", "vocab_size"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                problems.append(f"{field} must be a positive integer, got {getattr(self, field)!r}")
        if any(t != "full_attention" for t in self.layer_types or ()):
            problems.append("sliding-window layers are not supported (layer_types must all be 'full_attention')")
        if problems:
            raise ConfigError("invalid Orthrus config: " + "; ".join(problems))


def register_with_transformers() -> None:
    """Make ``AutoConfig`` know model_type "orthrus" (idempotent)."""
    try:
        AutoConfig.register(OrthrusConfig.model_type, OrthrusConfig)
    except ValueError:
        pass  # already registered (by us, or by the SGLang plugin in the same process)


register_with_transformers()  # importing this module is enough for AutoConfig to know "orthrus"
