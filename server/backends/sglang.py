"""The SGLang backend: a running SGLang server, reached over its native HTTP API.

We send token ids to `POST /generate` (stream) and read committed ids plus the speculative
fields of `meta_info` back. SGLang may be down at start or go away later: requests then get
503 and /health says so; the next request after it returns simply works (no restart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from ..logprobs import LogprobRequest, TokenLogprob
from ..settings import GatewaySettings
from ..stats import OrthrusStats
from .base import (Backend, BackendError, BackendUnavailable, GenChunk, GenRequest, GenStream, Health, ModelInfo,
                   wait_shielded)

log = logging.getLogger("orthrus.gateway")
# How stale the block sizes SGLang reports (block_policy) may be: re-read from its /metrics at most this often.
BLOCK_POLICY_REFRESH_S = 2.0


def sglang_sampling_params(req: GenRequest) -> dict:
    params = {"max_new_tokens": req.max_new_tokens, "temperature": req.temperature, "top_p": req.top_p,
              "top_k": req.top_k if req.top_k > 0 else -1,  # SGLang spells "off" as -1
              "min_p": req.min_p,
              "stop_token_ids": list(req.stop_token_ids), "ignore_eos": req.ignore_eos}
    if req.seed is not None:
        params["sampling_seed"] = req.seed
    return params


def sglang_logprob_fields(req: GenRequest) -> dict:
    """The request's logprob asks in SGLang's /generate fields (the gateway detokenizes itself)."""
    spec = req.logprobs
    if spec is None:
        return {}
    fields = {"return_logprob": True, "top_logprobs_num": spec.top_k,
              "logprob_start_len": -1 if spec.prompt_start is None else spec.prompt_start}
    if spec.token_ids:
        fields["token_ids_logprob"] = list(spec.token_ids)
    return fields


def error_message(resp_body: bytes, status: int) -> str:
    try:
        obj = json.loads(resp_body)
    except ValueError:
        return resp_body.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for key in ("message", "detail", "error"):
            if obj.get(key):
                return str(obj[key])
    return str(obj)[:500]


class _SGLangStream(GenStream):
    def __init__(self, backend: SGLangBackend, req: GenRequest):
        self._backend, self._req = backend, req
        self._rid = uuid.uuid4().hex
        self._gen: AsyncIterator[GenChunk] | None = None
        self._finished = False
        self._closing: asyncio.Future | None = None

    def __aiter__(self) -> AsyncIterator[GenChunk]:
        self._gen = self._chunks()
        return self._gen

    async def _chunks(self) -> AsyncIterator[GenChunk]:
        b = self._backend
        payload = {"input_ids": self._req.prompt_ids, "sampling_params": sglang_sampling_params(self._req),
                   "stream": True, "rid": self._rid, **sglang_logprob_fields(self._req)}
        final = None
        try:
            async with b.client.stream("POST", "/generate", json=payload) as resp:
                if resp.status_code != 200:
                    msg = error_message(await resp.aread(), resp.status_code)
                    status = resp.status_code if 400 <= resp.status_code < 500 else 502
                    if resp.status_code == 503:
                        raise BackendUnavailable(f"SGLang is unavailable: {msg}")
                    raise BackendError(status, f"SGLang rejected the request: {msg}")
                received = 0
                async for line in resp.aiter_lines():
                    data = line[5:].strip() if line.startswith("data:") else ""
                    if final is not None or data in ("", "[DONE]"):
                        continue  # read on to the end of the body: only a fully read response keeps its connection
                    chunk, received = self._parse(json.loads(data), received, b.block_size, self._req.logprobs)
                    if chunk.finish_reason is not None:
                        final = chunk  # held until the body ends (just after [DONE]), so the connection is reused
                    else:
                        yield chunk
        except BackendError:
            raise
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise BackendUnavailable(f"SGLang at {b.url} is unreachable ({type(e).__name__}).")
        except httpx.HTTPError as e:
            if final is None:  # cut after its last chunk, the request still finished
                raise BackendError(502, f"Lost the connection to SGLang mid-request ({type(e).__name__}).")
        except Exception as e:  # transport bugs (seen: anyio on a socket that just died), bad JSON: a bad gateway
            log.warning("SGLang request failed", exc_info=e)
            raise BackendError(502, f"The request to SGLang failed ({type(e).__name__}).")
        if final is None:
            raise BackendError(502, "SGLang ended the stream before the request finished.")
        self._finished = True
        yield final

    @staticmethod
    def _parse(obj: dict, received: int, block_size: int | None,
               spec: LogprobRequest | None = None) -> tuple[GenChunk, int]:
        if "error" in obj:
            raise BackendError(502, f"SGLang reported an error: {error_message(json.dumps(obj).encode(), 500)}")
        ids, meta = obj.get("output_ids") or [], obj.get("meta_info") or {}
        total = meta.get("completion_tokens")
        # SGLang versions differ: streamed output_ids are cumulative by default, incremental with
        # --incremental-streaming-output. completion_tokens (always cumulative) tells them apart.
        cumulative = isinstance(total, int) and len(ids) == total >= received
        new = ids[received:] if cumulative else ids
        finish = meta.get("finish_reason")
        reason = finish.get("type") if isinstance(finish, dict) else finish
        if reason is not None and reason not in ("stop", "length"):
            raise BackendError(502, f"SGLang ended the request: {finish}")
        chunk = GenChunk(list(new), reason, OrthrusStats.from_sglang_meta(meta, block_size))
        if spec is not None:
            chunk.logprobs, chunk.prompt_logprobs = sglang_logprobs(meta, spec, received if cumulative else 0,
                                                                    len(new))
        return chunk, received + len(new)

    async def aclose(self) -> None:
        # The close runs in its own task: a cancel landing mid-close (client gone, shutdown) used to stop
        # httpcore half-way, leaving the connection neither closed nor back in the pool (issue 24).
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await wait_shielded(self._closing)

    async def _close(self) -> None:
        if self._gen is not None:
            try:
                await self._gen.aclose()  # closes the HTTP stream: SGLang aborts on disconnect
            except Exception:  # closing a stream to a dead server may fail; the abort below still goes out
                pass
        if not self._finished and self._gen is not None:
            self._finished = True
            try:  # and say so explicitly, in case the disconnect goes unnoticed
                await self._backend.client.post("/abort_request", json={"rid": self._rid}, timeout=2.0)
            except Exception:  # best effort: SGLang may be gone, and this must not hide the real error
                pass


class SGLangBackend(Backend):
    kind = "sglang"

    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.url = settings.backend_url.rstrip("/")
        self.client: httpx.AsyncClient | None = None
        self.block_size: int | None = settings.block_size
        self._info: ModelInfo | None = None
        self._info_lock = asyncio.Lock()
        self._policy: dict | None = None
        self._policy_read_at = -BLOCK_POLICY_REFRESH_S
        self._policy_task: asyncio.Task | None = None

    async def start(self) -> None:
        self.client = httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(self.settings.backend_timeout_s,
                                                                                 connect=5.0))
        try:
            await self.model_info()
        except BackendError as e:
            log.warning("SGLang backend not ready yet: %s", e.message)

    async def close(self) -> None:
        if self._policy_task is not None:
            self._policy_task.cancel()
        if self.client is not None:
            await self.client.aclose()

    def block_policy(self) -> dict | None:
        """The block sizes SGLang's steps took (ORTHRUS_BLOCK_POLICY), from the orthrus:*_by_block_size series
        of its /metrics (SGLang started with --enable-metrics; None otherwise, and behind the router, whose
        /metrics is its own). Never blocks: answers what the last read found and starts the next read."""
        now = time.monotonic()
        if now - self._policy_read_at >= BLOCK_POLICY_REFRESH_S and (self._policy_task is None
                                                                     or self._policy_task.done()):
            self._policy_read_at = now
            self._policy_task = asyncio.get_running_loop().create_task(self._read_block_policy())
        return self._policy

    async def _read_block_policy(self) -> None:
        try:
            resp = await self.client.get("/metrics", timeout=self.settings.health_timeout_s * 5)
            if resp.status_code == 200:
                self._policy = block_policy_from_metrics(resp.text)
        except Exception as e:  # SGLang down or not serving metrics: keep the last answer
            log.debug("reading SGLang's /metrics for the block sizes failed: %s", e)

    async def health(self) -> Health:
        try:
            resp = await self.client.get("/health", timeout=self.settings.health_timeout_s)
        except Exception as e:  # httpx errors, and transport bugs on dying sockets
            return Health(False, f"SGLang at {self.url} is unreachable ({type(e).__name__})")
        if resp.status_code != 200:
            return Health(False, f"SGLang /health answered HTTP {resp.status_code}")
        try:
            await self.model_info()
        except BackendError as e:
            return Health(False, e.message)
        return Health(True, "ok")

    async def model_info(self) -> ModelInfo:
        if self._info is not None:
            return self._info
        async with self._info_lock:
            if self._info is None:
                self._info = await self._fetch_model_info()
        return self._info

    async def _get_json(self, path: str) -> dict | None:
        try:
            resp = await self.client.get(path, timeout=self.settings.health_timeout_s * 5)
        except Exception as e:  # httpx errors, and transport bugs on dying sockets
            raise BackendUnavailable(f"SGLang at {self.url} is unreachable ({type(e).__name__}).")
        if resp.status_code != 200:
            return None
        try:
            return resp.json()
        except ValueError:
            return None

    async def _fetch_model_info(self) -> ModelInfo:
        info = await self._get_json("/get_model_info")
        if info is None:
            raise BackendUnavailable(f"SGLang at {self.url} did not answer /get_model_info.")
        server = await self._get_json("/get_server_info") or await self._get_json("/server_info") or {}
        if "context_length" not in server and "router_manager" in server:
            server = await self._router_worker_server_info() or server
        model_path = str(info.get("model_path") or self.settings.model or "")
        tokenizer_path = self.settings.model or info.get("tokenizer_path") or model_path
        if self.block_size is None and isinstance(server.get("speculative_num_draft_tokens"), int):
            self.block_size = server["speculative_num_draft_tokens"]
        try:
            tokenizer, config = await asyncio.get_running_loop().run_in_executor(None, _load_tokenizer, tokenizer_path)
        except Exception as e:
            raise BackendUnavailable(f"Could not load the tokenizer {tokenizer_path!r}: {e}")
        if self.block_size is None and isinstance(config.get("block_size"), int):
            self.block_size = config["block_size"]  # the checkpoint's, when the server did not say
        max_seq_len = server.get("context_length") or config.get("max_position_embeddings")
        eos = config.get("eos_token_id")
        eos_ids = frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])
        return ModelInfo(model_path=model_path, tokenizer=tokenizer, max_seq_len=max_seq_len,
                         block_size=self.block_size or config.get("block_size"), vocab_size=config.get("vocab_size"),
                         eos_token_ids=eos_ids, extra={"sglang_model_info": info})

    async def _router_worker_server_info(self) -> dict | None:
        """Behind SGLang's router (sglang-router), whose /get_server_info describes the router itself: the
        server info of its first healthy worker (context length, speculative block size), from GET /workers."""
        workers = (await self._get_json("/workers") or {}).get("workers")
        for w in workers if isinstance(workers, list) else []:
            if isinstance(w, dict) and w.get("is_healthy", True) and isinstance(w.get("url"), str):
                try:
                    resp = await self.client.get(w["url"].rstrip("/") + "/get_server_info",
                                                 timeout=self.settings.health_timeout_s * 5)
                    if resp.status_code == 200 and "context_length" in (info := resp.json()):
                        return info
                except Exception:  # that worker is gone or answers garbage: try the next one
                    continue
        return None

    def generate(self, req: GenRequest) -> GenStream:
        if req.ar_only:
            raise BackendError(400, "`ar_only` is only available on the embedded backend.")
        return _SGLangStream(self, req)


def block_policy_from_metrics(text: str) -> dict | None:
    """A BlockPolicy.snapshot()-shaped dict from SGLang's Prometheus text: request-steps and tau per block
    size (summed over label sets), each draft position's acceptance rate (accepted / reached, since the
    server started: not decayed like the policy's own profile); None when the server exports no orthrus:steps_by_block_size_total."""
    from prometheus_client.parser import text_string_to_metric_families

    steps: dict[int, float] = {}
    tokens: dict[int, float] = {}
    accepted: dict[int, float] = {}
    reached: dict[int, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "orthrus:steps_by_block_size_total":
                b = int(sample.labels["block_size"])
                steps[b] = steps.get(b, 0.0) + sample.value
            elif sample.name == "orthrus:tokens_by_block_size_total":
                b = int(sample.labels["block_size"])
                tokens[b] = tokens.get(b, 0.0) + sample.value
            elif sample.name in ("orthrus:accepted_position_total", "orthrus:reached_position_total"):
                counts = accepted if sample.name.startswith("orthrus:accepted") else reached
                i = int(sample.labels["position"])
                counts[i] = counts.get(i, 0.0) + sample.value
    if not steps:
        return None
    sizes = sorted(steps)
    rates = [round(accepted.get(i, 0.0) / reached[i], 4) if reached.get(i) else 0.0 for i in range(1, max(sizes))]
    return {"candidates": sizes, "adaptive": len(sizes) > 1,
            "steps_by_block_size": {b: int(steps[b]) for b in sizes},
            "tau_by_block_size": {b: (tokens.get(b, 0.0) / steps[b] if steps[b] else 0.0) for b in sizes},
            "acceptance_by_position": rates}


def sglang_logprobs(meta: dict, spec: LogprobRequest, skip: int, count: int):
    """(the new tokens' logprobs, the prompt's) from SGLang's meta_info: [logprob, id, text] triples."""
    def positions(prefix: str, lo: int, hi: int | None) -> list[TokenLogprob]:
        values = meta.get(f"{prefix}_token_logprobs") or []
        top = meta.get(f"{prefix}_top_logprobs") if spec.top_k else None
        by_id = meta.get(f"{prefix}_token_ids_logprobs") if spec.token_ids else None
        hi = len(values) if hi is None else hi
        return [TokenLogprob(values[j][0], _pairs(top, j), _pairs(by_id, j)) for j in range(lo, min(hi, len(values)))]

    output = positions("output", skip, skip + count)
    if len(output) != count:
        raise BackendError(502, f"SGLang sent logprobs for {len(output)} of {count} new tokens.")
    return output, positions("input", 0, None)


def _pairs(rows: list | None, j: int):
    row = rows[j] if isinstance(rows, list) and j < len(rows) else None
    return None if not row else tuple((int(t), float(v)) for v, t, *_ in row)


def _load_tokenizer(path: str) -> tuple[object, dict]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    config_file = Path(path) / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    return tokenizer, config
