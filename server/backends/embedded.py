"""The embedded backend: the reference engine in this process, driven by one worker thread."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from ..settings import GatewaySettings
from .base import Backend, BackendError, BackendUnavailable, GenChunk, GenRequest, GenStream, Health, ModelInfo
from .engine_worker import EngineWorker


def resolve_device_dtype(device: str, dtype: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else "bfloat16"
    return device, getattr(torch, dtype)


class _EngineStream(GenStream):
    def __init__(self, worker: EngineWorker, req: GenRequest, params, logprobs):
        self._worker = worker
        self._id = uuid.uuid4().hex
        self._queue: asyncio.Queue = asyncio.Queue()
        self._open = True
        loop = asyncio.get_running_loop()

        def sink(item) -> None:  # worker thread -> event loop
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, item)
            except RuntimeError:
                pass  # the loop is closed: nobody is listening any more

        worker.submit(self._id, req.prompt_ids, params, req.ar_only, logprobs, sink)

    async def _chunks(self) -> AsyncIterator[GenChunk]:
        while self._open:
            item = await self._queue.get()
            if isinstance(item, Exception):
                self._open = False
                raise item
            if item.finish_reason is not None:
                self._open = False
            yield item

    def __aiter__(self) -> AsyncIterator[GenChunk]:
        return self._chunks()

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._worker.abort(self._id)


class EmbeddedBackend(Backend):
    kind = "embedded"

    def __init__(self, settings: GatewaySettings, engine=None):
        self.settings = settings
        self.engine = engine  # tests may pass a ready engine
        self.worker: EngineWorker | None = None
        self._info: ModelInfo | None = None

    async def start(self) -> None:
        if self.engine is None:
            self.engine = await asyncio.get_running_loop().run_in_executor(None, self._load_engine)
        eng = self.engine
        if eng.tokenizer is None:
            raise RuntimeError(f"the checkpoint {self.settings.model!r} has no tokenizer; the gateway needs one")
        self._info = ModelInfo(model_path=str(self.settings.model), tokenizer=eng.tokenizer, max_seq_len=eng.max_seq_len,
                               block_size=eng.block_size, vocab_size=eng.config.vocab_size,
                               eos_token_ids=frozenset(eng.eos_token_ids),
                               extra={"device": str(eng.device), "architectures": list(eng.config.architectures or [])})
        self.worker = EngineWorker(eng)
        self.worker.start()

    def _load_engine(self):
        from orthrus_sglang.ref.engine import Engine

        s = self.settings
        device, dtype = resolve_device_dtype(s.device, s.dtype)
        return Engine(s.model, device=device, dtype=dtype, block_size=s.block_size,
                      max_batch_size=s.max_batch_size, max_seq_len=s.max_seq_len,
                      adaptive_block=s.block_policy == "adaptive")

    async def close(self) -> None:
        if self.worker is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.worker.stop)

    async def health(self) -> Health:
        w = self.worker
        if w is None or not w.alive:
            return Health(False, "the engine is not running")
        detail = "ok" if w.last_error is None else f"ok (last step error: {w.last_error})"
        return Health(True, detail, running=w.running, waiting=w.waiting)

    async def model_info(self) -> ModelInfo:
        if self._info is None:
            raise BackendUnavailable("The model is still loading.")
        return self._info

    def generate(self, req: GenRequest) -> GenStream:
        from orthrus_sglang.sampling import SamplingParams

        if self.worker is None or not self.worker.alive:
            raise BackendUnavailable("The engine is not running.")
        try:
            params = SamplingParams(max_new_tokens=req.max_new_tokens, temperature=req.temperature, top_k=req.top_k,
                                    top_p=req.top_p, min_p=req.min_p, seed=req.seed, stop_token_ids=tuple(req.stop_token_ids),
                                    ignore_eos=req.ignore_eos)
        except ValueError as e:
            raise BackendError(400, str(e))
        return _EngineStream(self.worker, req, params, req.logprobs)

    def load(self) -> tuple[int, int]:
        return (self.worker.running, self.worker.waiting) if self.worker else (0, 0)

    def block_policy(self) -> dict | None:
        # Read while the engine thread steps: safe, the policy's dicts never change size (BlockPolicy.observe).
        return self.engine.block_policy.snapshot() if self.engine is not None else None
