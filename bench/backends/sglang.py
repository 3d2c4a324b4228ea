"""The SGLang backend of bench/throughput.py: one in-process sgl.Engine per mode (GPU host).

AR, ORTHRUS and the DFLASH peer run the same shape, prompts and engine arguments; only the
speculative flags differ. With ``--shape`` (random weights, ``--load-format dummy``) the AR
baseline and DFLASH's target are SGLang's own Qwen3ForCausalLM (what a user would otherwise
serve); ORTHRUS serves OrthrusLM of the same shape plus its diffusion-view attention weights.
Pinned acceptance (``Mode.pinned_tau``) sets SGLang's SGLANG_SIMULATE_ACC_* switch, read by the
ORTHRUS worker exactly as by DFLASH's: the full draft and verify passes still run.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from ..engine_metrics import EngineMetrics
from ..record import Mode, RequestTiming, request_sampling
from ..shapes import SHAPES, SPECIAL_IDS, write_plain_qwen3_shape, write_shape

SIMULATE_ENV = ("SGLANG_SIMULATE_ACC_LEN", "SGLANG_SIMULATE_ACC_METHOD", "SGLANG_SIMULATE_ACC_TOKEN_MODE")
MODE_ENV = SIMULATE_ENV + ("ORTHRUS_SIMULATE_ACCEPT_RATE", "ORTHRUS_DRAFT_WEIGHTS", "ORTHRUS_FP8_DRAFTS",
                           "ORTHRUS_BLOCK_POLICY", "ORTHRUS_BLOCK_SIZES", "ORTHRUS_ACCEPT_GRAPHS",
                           "PROMETHEUS_MULTIPROC_DIR")
DFLASH_BLOCK = 16  # SGLang's DFLASH drafter block, as published (docs/results.md)


def _raise(signum, frame):
    raise RuntimeError("an SGLang child process failed")


def write_dflash_draft(shape: str, root: Path) -> Path:
    """A random-weight DFLASH drafter for a shape, configured as published (5 layers, block 16)."""
    s = SHAPES[shape]
    layers = s["num_hidden_layers"]
    config = dict(architectures=["DFlashDraftModel"], model_type="qwen3", num_hidden_layers=5,
                  hidden_size=s["hidden_size"], intermediate_size=s["intermediate_size"],
                  num_attention_heads=s["num_attention_heads"], num_key_value_heads=s["num_key_value_heads"],
                  head_dim=s["head_dim"], vocab_size=s["vocab_size"], max_position_embeddings=s["max_position_embeddings"],
                  rms_norm_eps=1e-6, rope_theta=1000000.0, hidden_act="silu", torch_dtype="bfloat16",
                  layer_types=["full_attention"] * 5, block_size=DFLASH_BLOCK, num_target_layers=layers,
                  dflash_config={"mask_token_id": {**SPECIAL_IDS, **s}["mask_token_id"],
                                 "target_layer_ids": [1 + i * ((layers - 4) // 4) for i in range(5)]})
    path = Path(root) / f"{shape}-dflash-draft"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


def _version(md, package: str) -> str | None:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


class SGLangSession:
    def __init__(self, engine, args, metrics: EngineMetrics | None = None):
        self.engine = engine
        self.args = args
        self.metrics = metrics  # --enable-metrics on an ORTHRUS engine: its scheduler's orthrus:* series

    def generate(self, prompts: list[list[int]], out_len: int, concurrency: int,
                 temperature: float = 0.0) -> list[RequestTiming]:
        return self.engine.loop.run_until_complete(self._generate(prompts, out_len, concurrency, temperature))

    async def _generate(self, prompts, out_len, concurrency, temperature):
        gate = asyncio.Semaphore(concurrency)
        async def one(i: int, ids: list[int]) -> RequestTiming:
            params = {**request_sampling(self.args, i, temperature), "max_new_tokens": out_len, "ignore_eos": True}
            async with gate:
                start, first, last = time.perf_counter(), None, None
                stream = await self.engine.async_generate(input_ids=ids, sampling_params=params, stream=True)
                async for chunk in stream:  # not incremental: each chunk holds every id so far
                    if first is None and chunk["output_ids"]:
                        first = time.perf_counter()
                    last = chunk
                end = time.perf_counter()
            meta = last["meta_info"]
            hist = list(meta.get("spec_correct_drafts_histogram") or [])
            return RequestTiming(prompt_len=len(ids), output_ids=list(last["output_ids"]), ttft_s=(first or end) - start,
                                 e2e_s=end - start, verify_steps=int(meta.get("spec_verify_ct") or 0),
                                 accept_histogram=hist,
                                 accepted_per_position=[sum(hist[n] for n in range(i + 1, len(hist)))
                                                        for i in range(max(len(hist) - 1, 0))])

        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))

    def memory(self) -> dict:
        info = self.engine.get_server_info()
        states = info.get("internal_states") or [{}]
        return {"kv_pool_tokens": info.get("max_total_num_tokens"),
                "max_running_requests": states[0].get("effective_max_running_requests_per_dp",
                                                      info.get("max_running_requests")),
                "memory_usage": states[0].get("memory_usage")}

    def block_sizes(self) -> dict[int, int] | None:
        """Request-steps per block size so far, from the scheduler's orthrus:* series (--enable-metrics)."""
        return self.metrics.block_sizes() if self.metrics is not None else None

    def close(self) -> None:
        self.engine.shutdown()


class SGLangBackend:
    name = "sglang"

    def __init__(self, args):
        self.args = args
        self._tmp = tempfile.TemporaryDirectory(prefix="orthrus-bench-")
        self.root = Path(self._tmp.name)
        self.max_concurrency = max(args.concurrency)  # bench/throughput.py's parsed flags
        longest = max(args.contexts + [args.prompt_len])
        self.context_length = longest + max(args.out_len, args.context_out_len) + 64  # + a verify block of slack
        self.tokenizer = self._tokenizer(args.model)  # --datasets encode their questions with it
        self.on_cpu = args.device == "cpu"
        if self.on_cpu:  # SGLang's CPU engine (as in CI); is_cpu() reads this at import, here and in children
            os.environ["SGLANG_USE_CPU_ENGINE"] = "1"

    @staticmethod
    def _tokenizer(model):
        if not model or not any((Path(model) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
            return None  # random weights, or a checkpoint without one: synthetic prompts only
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model)

    def _device_args(self, mode: Mode | None = None) -> dict:
        if self.on_cpu:
            return dict(device="cpu", attention_backend="torch_native", disable_cuda_graph=True, dtype="float32",
                        mem_fraction_static=0.05, max_total_tokens=max(8192, 4 * self.context_length))
        # Decode CUDA graphs on (the measured path); prefill graphs off in every mode: their capture
        # costs minutes per engine start and only prefill (TTFT) would use them.
        backend = (mode and mode.attention_backend) or self.args.attention_backend[0]
        return dict(attention_backend=backend, dtype="bfloat16",
                    mem_fraction_static=self.args.mem_fraction,
                    cuda_graph_max_bs_decode=self.max_concurrency, cuda_graph_backend_prefill="disabled")

    def describe(self) -> dict:
        import importlib.metadata as md

        import sglang
        import torch

        shape = (json.loads((Path(self.args.model) / "config.json").read_text()) if self.args.model
                 else dict(SHAPES[self.args.shape], name=self.args.shape, weights="random (--load-format dummy)"))
        device = self._device_args()
        return {"backend": "sglang", "hardware": "CPU (SGLang CPU engine)" if self.on_cpu else torch.cuda.get_device_name(),
                "versions": {"sglang": sglang.__version__, "torch": torch.__version__, "triton": _version(md, "triton"),
                             "cuda": torch.version.cuda},
                "model": shape, "dtype": device["dtype"],
                "attention_backend": ("torch_native" if self.on_cpu else ", ".join(self.args.attention_backend)),
                "cuda_graphs": "decode only" if not self.on_cpu else False, "overlap_scheduler": not self.on_cpu}

    def close(self) -> None:
        self._tmp.cleanup()

    def _model_path(self, mode: Mode) -> Path:
        if self.args.model:
            return Path(self.args.model)
        if mode.name in ("AR", "DFLASH"):
            return write_plain_qwen3_shape(self.args.shape, self.root)
        return write_shape(self.args.shape, mode.block_size, self.root)

    def open(self, mode: Mode) -> SGLangSession:
        from orthrus_sglang.sgl.options import scheduler_env

        with scheduler_env(dict.fromkeys(MODE_ENV)):  # for this engine's start only: unset, then _start's
            return self._start(mode)

    def _start(self, mode: Mode) -> SGLangSession:
        import sglang

        if mode.accept_rate:
            os.environ["ORTHRUS_SIMULATE_ACCEPT_RATE"] = str(mode.accept_rate)
        os.environ["ORTHRUS_DRAFT_WEIGHTS"] = mode.draft_weights
        os.environ["ORTHRUS_BLOCK_POLICY"] = mode.block_policy
        if mode.block_sizes:
            os.environ["ORTHRUS_BLOCK_SIZES"] = mode.block_sizes
        os.environ["ORTHRUS_ACCEPT_GRAPHS"] = "1" if mode.accept_graphs else "0"
        if mode.pinned_tau:
            os.environ.update(SGLANG_SIMULATE_ACC_LEN=str(mode.pinned_tau),
                              SGLANG_SIMULATE_ACC_METHOD="match-expected", SGLANG_SIMULATE_ACC_TOKEN_MODE="fixed")
        extra: dict = {} if self.args.model else {"load_format": "dummy"}
        metrics = EngineMetrics(self.root) if self.args.enable_metrics else None  # as the README's serve command
        if metrics is not None:
            os.environ.update(metrics.env)  # for this engine's start only (open() restores it)
            extra.update(metrics.engine_flags)
        if mode.name == "ORTHRUS":
            extra.update(speculative_algorithm="ORTHRUS", speculative_num_draft_tokens=mode.block_size,
                         speculative_use_rejection_sampling=mode.sampled_drafts)
        elif mode.name == "DFLASH":
            if self.args.model:
                raise ValueError("the DFLASH peer runs on random weights only (--shape, no --model)")
            extra.update(speculative_algorithm="DFLASH", speculative_num_draft_tokens=mode.block_size or DFLASH_BLOCK,
                         speculative_draft_model_path=str(write_dflash_draft(self.args.shape, self.root)),
                         speculative_draft_load_format="dummy",
                         speculative_draft_attention_backend=self._device_args(mode)["attention_backend"])
        elif mode.name != "AR":
            raise ValueError(f"unknown mode {mode.name!r}")
        engine = sglang.Engine(model_path=str(self._model_path(mode)), sampling_backend="pytorch",
                               skip_tokenizer_init=True, context_length=self.context_length,
                               max_running_requests=self.max_concurrency, random_seed=0,
                               log_level=self.args.log_level, custom_sigquit_handler=_raise,
                               **self._device_args(mode), **extra)
        return SGLangSession(engine, self.args, metrics if mode.name == "ORTHRUS" else None)
