"""Command-line flags for the gateway; `orthrus serve` reuses add_arguments + settings_from_args.

Flags that are not given leave the ORTHRUS_* environment variables (or the defaults) in charge.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import GatewaySettings

# flag -> (settings field, type, help)
FLAGS = {
    "--model": ("model", str, "checkpoint dir, hub id, or the demo model (default: smollm2-135m-instruct)"),
    "--served-model-name": ("served_model_name", str, "model id clients use (default: from --model)"),
    "--backend": ("backend", str, "embedded or sglang (default: embedded)"),
    "--backend-url": ("backend_url", str, "SGLang server URL for --backend sglang (default: http://127.0.0.1:30000)"),
    "--host": ("host", str, "bind address (default: 127.0.0.1)"),
    "--port": ("port", int, "port, 0: any free one (default: 8000)"),
    "--api-key": ("api_key", str, "require 'Authorization: Bearer KEY' (default: none, no auth; prefer "
                                  "ORTHRUS_API_KEY: flags show in ps)"),
    "--max-concurrent-requests": ("max_concurrent_requests", int, "requests generating at once (default: 64)"),
    "--max-queue": ("max_queue", int, "requests waiting for a slot before 429 (default: 256)"),
    "--max-body-bytes": ("max_body_bytes", int, "largest request body in bytes (default: 2097152, 2 MiB)"),
    "--device": ("device", str, "embedded engine device: auto, cpu, cuda, cuda:1 ... (default: auto)"),
    "--dtype": ("dtype", str, "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16 (default: auto)"),
    "--block-size": ("block_size", int, "Orthrus block size B (default: the checkpoint's)"),
    "--block-policy": ("block_policy", str, "fixed: every step drafts B-1 tokens; adaptive: each step picks B from "
                                            "1 (AR), 2, 4, .. B by expected tokens per second (default: fixed)"),
    "--max-batch-size": ("max_batch_size", int, "embedded engine batch slots (default: 8)"),
    "--max-seq-len": ("max_seq_len", int, "context limit, prompt + generation (default: the engine's)"),
    "--threads": ("threads", int, "torch CPU threads of the embedded engine (default: $ORTHRUS_THREADS, else half "
                                  "the CPUs, at most 8)"),
    "--shutdown-grace-s": ("shutdown_grace_s", float, "seconds in-flight streams get on shutdown (default: 5.0)"),
    "--log-level": ("log_level", str, "uvicorn log level (default: info)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, (field, kind, help_text) in FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, default=argparse.SUPPRESS, help=help_text)


def settings_from_args(args: argparse.Namespace, *, default_model: str | None = None) -> GatewaySettings:
    """Flags given on the command line override ORTHRUS_* variables. Exits with a message on bad values.

    `default_model` applies when neither --model nor ORTHRUS_MODEL names one (and the backend is embedded).
    """
    # Imported here so that `orthrus --help` and usage errors need neither pydantic nor the settings.
    from pydantic import ValidationError

    from .settings import GatewaySettings

    given = {field: getattr(args, field) for field, _, _ in FLAGS.values() if hasattr(args, field)}
    backend = given.get("backend", os.environ.get("ORTHRUS_BACKEND", "embedded"))
    if default_model and "model" not in given and not os.environ.get("ORTHRUS_MODEL") and backend == "embedded":
        given["model"] = default_model
    try:
        return GatewaySettings(**given)
    except ValidationError as e:
        raise SystemExit(f"invalid gateway settings: {describe_errors(e, given)}") from None


def describe_errors(error, given: dict) -> str:
    """A pydantic ValidationError in one line, each problem under the flag or variable that set it."""
    flags = {field: flag for flag, (field, _, _) in FLAGS.items()}
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item.get("loc") else None
        message = item["msg"].removeprefix("Value error, ")
        if field is None:
            problems.append(message)
            continue
        source = flags.get(field, field) if field in given else f"ORTHRUS_{field.upper()}"
        problems.append(f"{source} {item.get('input')!r}: {message}" if "input" in item else f"{source}: {message}")
    return "; ".join(problems)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orthrus_server", description="Orthrus OpenAI-compatible gateway")
    add_arguments(parser)
    from orthrus_sglang.demo import DEMO_MODEL_ID

    settings = settings_from_args(parser.parse_args(argv), default_model=DEMO_MODEL_ID)
    from .main import run

    run(settings)
