"""Gateway settings: pydantic-settings, read from ORTHRUS_* environment variables or passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORTHRUS_", extra="forbid", frozen=True)

    model: str | None = Field(None, description="checkpoint directory, hub id or 'smollm2-135m-instruct' (demo)")
    served_model_name: str | None = Field(None, description="the id clients pass as `model`; default from `model`")
    backend: Literal["embedded", "sglang"] = "embedded"
    backend_url: str = "http://127.0.0.1:30000"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None

    max_concurrent_requests: int = Field(64, ge=1, description="requests generating at once; more wait in the queue")
    max_queue: int = Field(256, ge=0, description="requests waiting for a slot; beyond it: 429")
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    retry_after_s: int = Field(1, ge=1)

    # Embedded engine.
    device: str = "auto"  # auto: cuda if available, else cpu
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: fp32 on cpu, bf16 on cuda
    block_size: int | None = Field(None, ge=1)
    # fixed: every step uses block_size; adaptive: each step picks B in 1 (AR), 2, 4, .. block_size by
    # expected tokens per second (orthrus_sglang/block_policy.py).
    block_policy: Literal["fixed", "adaptive"] = "fixed"
    max_batch_size: int = Field(8, ge=1)
    max_seq_len: int | None = Field(None, ge=2)
    # torch CPU threads; None: half the CPUs this process may use, at most 8, unless OMP_NUM_THREADS
    # is set (orthrus_sglang.threads says why).
    threads: int | None = Field(None, ge=1)

    # SGLang backend.
    backend_timeout_s: float = Field(600.0, gt=0)
    health_timeout_s: float = Field(2.0, gt=0)

    # An Orthrus step is two passes over B tokens (draft + verify); when both are memory-bound
    # each costs about one AR decode pass, so tau / step_cost estimates the speedup over AR.
    step_cost: float = Field(2.0, gt=0)
    shutdown_grace_s: float = Field(5.0, ge=0, description="in-flight streams get this long to finish on shutdown")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @model_validator(mode="after")
    def _check(self) -> GatewaySettings:
        if self.backend == "embedded" and not self.model:
            raise ValueError("the embedded backend needs a model (--model / ORTHRUS_MODEL)")
        if self.backend == "sglang" and not self.backend_url.startswith(("http://", "https://")):
            raise ValueError(f"backend_url must start with http:// or https://, got {self.backend_url!r}")
        return self

    @property
    def model_id(self) -> str:
        """The model name clients see in /v1/models and must pass as `model`."""
        if self.served_model_name:
            return self.served_model_name
        if self.model:
            return Path(self.model.rstrip("/")).name or self.model
        return "orthrus"

    @property
    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None
