"""orthrus-sglang: Orthrus (lossless multi-token decoding with a diffusion view) for SGLang.

Importing this package never imports sglang; it registers the "orthrus" config with
transformers so ``AutoConfig.from_pretrained`` reads Orthrus checkpoints.
"""

from .config import ConfigError, OrthrusConfig, register_with_transformers
from .sampling import SamplingParams
from .stats import DecodeStats

register_with_transformers()

__all__ = ["ConfigError", "DecodeStats", "OrthrusConfig", "SamplingParams"]
__version__ = "0.1.0"
