"""ORTHRUS server options. SGLang has no flags for plugins, so they are environment variables,
read in every SGLang process (the scheduler inherits the launcher's environment).

- ``ORTHRUS_BLOCK_ATTENTION`` (default 1): on CUDA, both passes of a step attend through
  ``block_attention`` (device-only metadata, so the host never waits for a step before
  preparing the next). 0 falls back to the server's attention backend.
- ``ORTHRUS_DRAFT_WEIGHTS`` (default bf16): what the draft pass reads (orthrus_sglang/draft_weights.py):
  the checkpoint's weights, or ``auto`` (fp8 where the fused kernels below run the model and its
  draft weights are large enough for fp8 to be faster, else bf16: draft_weights.resolve), or fp8 (w8a8: SGLang's per-token quantisation kernel and CUTLASS
  ``fp8_scaled_mm`` on Ada/Hopper) or int4 (w4a16, groups of 128; int4-g64 / int4-g32: smaller
  groups: SGLang's Marlin, JIT-compiled on first use) copies of the MLP, diffusion attention and lm_head. Lossless: only the verify pass
  decides tokens. ``ORTHRUS_FP8_DRAFTS=1``, the older switch, is ``fp8``.
- ``ORTHRUS_FUSED_RACE`` (default 0): keyed draws over the vocabulary as one Triton kernel
  (orthrus_sglang/keyed_race.py; read there, by both engines).
- ``ORTHRUS_ACCEPT_GRAPHS`` (default 0): on CUDA, a sampled batch's acceptance replays from its own
  CUDA graph, captured once per batch size, block size and candidate bound (sgl/accept_graphs.py),
  instead of about 350 eager PyTorch ops after the step's graph.
- ``ORTHRUS_SIMULATE_ACCEPT_RATE`` (benchmarks only, NOT lossless): every request accepts each
  draft with this probability once the drafts before it were accepted (a geometric profile,
  tau = (1 - r^B) / (1 - r)), instead of what the model accepted; SGLang's own switch,
  SGLANG_SIMULATE_ACC_LEN, pins one length for every request instead.
- ``ORTHRUS_DEFAULT_BLOCK_SIZE`` (default 16): block size when ``--speculative-num-draft-tokens``
  is not given (capped at the checkpoint's ``block_size``).
- ``ORTHRUS_BLOCK_POLICY`` (default fixed): ``fixed``: every step drafts B-1 tokens, B =
  ``--speculative-num-draft-tokens``. ``adaptive``: each step picks its block size from
  ``ORTHRUS_BLOCK_SIZES`` by expected tokens per second (orthrus_sglang/block_policy.py, the
  reference engine's policy; 1 = a plain AR step); on CUDA every size gets its own attention backend
  and CUDA graphs (sgl/block_states.py). ``cycle``: every size in turn, one per step (a check of
  losslessness at every size, not for speed). SGLang's ``--speculative-adaptive`` is EAGLE's and refused.
- ``ORTHRUS_BLOCK_SIZES`` (default 1, the powers of two below B, and B): the sizes ``adaptive`` and
  ``cycle`` choose from, comma-separated, each in 1..B (B stays the most SGLang reserves KV for).
"""

from __future__ import annotations

import contextlib
import functools
import os

DEFAULT_BLOCK_SIZE = 16


@contextlib.contextmanager
def scheduler_env(values: dict):
    """Set these variables (None: unset) while an SGLang engine starts, then restore them: its
    scheduler process reads the options above when it starts, and no later engine of this process
    (a test's, another mode's) may inherit them."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        _set_env(values)
        yield
    finally:
        _set_env(saved)


def _set_env(values: dict) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r}: expected 0 or 1")


def _server_args():
    try:
        from .compat import effective_server_args

        return effective_server_args()
    except Exception:  # no runtime context in this process (unit tests, tools)
        return None


@functools.lru_cache(maxsize=None)
def use_block_attention() -> bool:
    """Whether ORTHRUS steps attend through block_attention (CUDA, bf16/fp16 KV cache)."""
    import torch

    if not _flag("ORTHRUS_BLOCK_ATTENTION", True) or not torch.cuda.is_available() or torch.version.hip:
        return False
    args = _server_args()
    if args is not None and (args.device not in (None, "cuda") or args.kv_cache_dtype not in ("auto", None)):
        return False
    return True


def accept_graphs() -> bool:
    """ORTHRUS_ACCEPT_GRAPHS (default off): sampled acceptance replayed from CUDA graphs (accept_graphs.py)."""
    return _flag("ORTHRUS_ACCEPT_GRAPHS", False)


def draft_weights() -> str:
    """ORTHRUS_DRAFT_WEIGHTS (draft_weights.KINDS), or fp8 under the older ORTHRUS_FP8_DRAFTS=1."""
    from ..draft_weights import KINDS

    kind = (os.environ.get("ORTHRUS_DRAFT_WEIGHTS") or "").strip().lower()
    if kind and kind not in KINDS:
        raise ValueError(f"ORTHRUS_DRAFT_WEIGHTS={kind!r}: expected one of {', '.join(KINDS)}")
    if _flag("ORTHRUS_FP8_DRAFTS", False):
        if kind not in ("", "fp8"):
            raise ValueError(f"ORTHRUS_FP8_DRAFTS=1 and ORTHRUS_DRAFT_WEIGHTS={kind} disagree: set one")
        return "fp8"
    return kind or "bf16"


def simulated_accept_rate() -> float | None:
    """ORTHRUS_SIMULATE_ACCEPT_RATE in (0, 1), or None when unset (pinned_acceptance.geometric_accepted)."""
    value = os.environ.get("ORTHRUS_SIMULATE_ACCEPT_RATE", "").strip()
    if not value:
        return None
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not 0.0 < rate < 1.0:
        raise ValueError(f"ORTHRUS_SIMULATE_ACCEPT_RATE={value!r}: expected a probability in (0, 1)")
    return rate


def default_block_size(checkpoint_block_size: int) -> int:
    value = os.environ.get("ORTHRUS_DEFAULT_BLOCK_SIZE", "").strip()
    wanted = int(value) if value else DEFAULT_BLOCK_SIZE
    if wanted < 2:
        raise ValueError(f"ORTHRUS_DEFAULT_BLOCK_SIZE={value!r}: must be >= 2")
    return min(wanted, int(checkpoint_block_size))


BLOCK_POLICIES = ("fixed", "adaptive", "cycle")


def block_policy() -> str:
    """ORTHRUS_BLOCK_POLICY, one of BLOCK_POLICIES."""
    value = (os.environ.get("ORTHRUS_BLOCK_POLICY") or "fixed").strip().lower()
    if value not in BLOCK_POLICIES:
        raise ValueError(f"ORTHRUS_BLOCK_POLICY={value!r}: expected one of {', '.join(BLOCK_POLICIES)}")
    return value


def block_sizes(max_block_size: int) -> tuple[int, ...]:
    """The block sizes a step may take: (B,) under the fixed policy; else ORTHRUS_BLOCK_SIZES or
    block_policy.default_candidates(B), sorted, each in 1..B."""
    from ..block_policy import default_candidates

    if block_policy() == "fixed":
        return (int(max_block_size),)
    value = os.environ.get("ORTHRUS_BLOCK_SIZES", "").strip()
    if not value:
        return default_candidates(int(max_block_size))
    try:
        sizes = tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        sizes = ()
    if not sizes or sizes[0] < 1 or sizes[-1] > max_block_size:
        raise ValueError(f"ORTHRUS_BLOCK_SIZES={value!r}: expected comma-separated block sizes in 1..{max_block_size} "
                         f"(--speculative-num-draft-tokens is the largest)")
    return sizes


@functools.lru_cache(maxsize=None)
def _deterministic() -> bool:
    args = _server_args()
    return bool(args is not None and args.enable_deterministic_inference)


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    import torch

    return torch.cuda.get_device_properties(device_index).multi_processor_count


def block_attention_splits(batch_size: int, num_kv_heads: int, device) -> int:
    """Key-range splits for block_attention. One under --enable-deterministic-inference: the
    result of a request must not depend on the batch it runs in."""
    from .block_attention import num_splits_for

    if _deterministic():
        return 1
    return num_splits_for(batch_size, num_kv_heads, _sm_count(device.index or 0))
