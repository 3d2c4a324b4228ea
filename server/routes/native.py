"""SGLang's native API on the gateway: POST /generate, GET /get_model_info, /get_server_info.

So that SGLang frontend scripts (`sgl.RuntimeEndpoint(gateway_url)`) run against either backend.
Streamed `text` and `output_ids` are cumulative, as SGLang sends them by default.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..backends.base import GenRequest
from ..body import read_json
from ..deps import gateway, require_api_key
from ..generation import SeqResult, SeqSpec
from ..logprob_formats import sglang_meta
from ..logprobs import TokenTexts
from ..native_batch import spread
from ..native_schemas import NativeGenerateRequest
from ..prompting import budget, checked_token_ids, text_prompt_ids
from ..sse import DONE, EventStream, frame
from .common import StartedStream, model_info, new_id, run, stream_response

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.get("/get_model_info")
@router.get("/model_info")
async def get_model_info(request: Request):
    state = gateway(request)
    info = await model_info(state)
    return {"model_path": info.model_path or state.settings.model_id, "tokenizer_path": info.model_path,
            "is_generation": True, "preferred_sampling_params": None, "weight_version": "default",
            "has_image_understanding": False, "has_audio_understanding": False,
            "served_model_name": state.settings.model_id, "orthrus_block_size": info.block_size}


@router.get("/get_server_info")
@router.get("/server_info")
async def get_server_info(request: Request):
    state = gateway(request)
    info = await model_info(state)
    live = state.live.snapshot()
    return {"model_path": info.model_path, "context_length": info.max_seq_len, "backend": state.backend.kind,
            "speculative_algorithm": "ORTHRUS", "speculative_num_draft_tokens": info.block_size,
            "avg_spec_accept_length": live["tau"], "version": "orthrus-gateway",
            # where SGLang keeps it: sglang.bench_serving reports it as "Accept length"
            "internal_states": [{"avg_spec_accept_length": live["tau"]}]}


@router.post("/flush_cache")
async def flush_cache():
    return {"success": True, "message": "The gateway keeps no prefix cache."}


@router.post("/generate")
async def generate(request: Request):
    arrived_at = time.monotonic()
    state = gateway(request)
    body = await read_json(request, NativeGenerateRequest)
    info = await model_info(state)
    if body.text is not None:
        texts = body.text if isinstance(body.text, list) else [body.text]
        prompts = [text_prompt_ids(info, t) for t in texts]
    else:
        batch = body.input_ids if body.is_batch else [body.input_ids]
        prompts = [checked_token_ids(info, p, f"input_ids[{i}]") for i, p in enumerate(batch)]
    jobs = spread(body, prompts, info.vocab_size or len(info.tokenizer), new_id("gen"))
    prompt_param = "text" if body.text is not None else "input_ids"
    budgets = [budget(info, len(j.prompt_ids), j.params.max_new_tokens, param="sampling_params.max_new_tokens",
                      prompt_param=prompt_param) for j in jobs]
    texts_of = TokenTexts(info.tokenizer) if body.return_text_in_logprobs else None

    def one(i: int, text: str, ids: list[int], reason: str | None, stats, logprobs=(), prompt_logprobs=None) -> dict:
        job = jobs[i]
        meta = {"id": job.rid, "prompt_tokens": len(job.prompt_ids), "completion_tokens": len(ids), "cached_tokens": 0,
                "e2e_latency": round(time.monotonic() - arrived_at, 6), "finish_reason": None}
        if reason == "length":
            meta["finish_reason"] = {"type": "length", "length": len(ids)}
        elif reason == "stop":
            meta["finish_reason"] = {"type": "stop", "matched": ids[-1] if ids else None}
        if job.logprobs is not None:
            meta.update(sglang_meta(job.logprobs, job.prompt_ids, prompt_logprobs, ids, logprobs, texts_of))
        if stats is not None:
            meta.update(spec_verify_ct=stats.num_steps, spec_accept_length=round(stats.tau, 4),
                        spec_accept_histogram=stats.accept_length_histogram, orthrus=stats.to_json())
        out = {"text": text, "output_ids": list(ids), "meta_info": meta}
        return {**out, "prompt_token_ids": list(job.prompt_ids)} if body.return_prompt_token_ids else out

    if not any(budgets) and all(j.logprobs is None for j in jobs):  # the frontend's prefix-cache calls
        empty = [one(i, "", [], "length", None) for i in range(len(jobs))]
        if not body.stream:
            return empty if body.is_batch else empty[0]

        async def frames():
            for i, obj in enumerate(empty):
                yield frame({**obj, "index": i} if body.is_batch else obj)
            yield DONE

        return EventStream(frames())

    specs = [SeqSpec(i, GenRequest(prompt_ids=j.prompt_ids, max_new_tokens=b, temperature=sp.temperature_or_default,
                                   top_p=sp.top_p_or_default, top_k=sp.top_k_or_off, min_p=sp.min_p_or_off,
                                   seed=sp.sampling_seed,
                                   stop_token_ids=tuple(sp.stop_token_ids or ()), ignore_eos=bool(sp.ignore_eos),
                                   ar_only=sp.ar_only, logprobs=j.logprobs), sp.stop or [], sp.skip_special)
             for i, (j, sp, b) in enumerate(zip(jobs, [j.params for j in jobs], budgets))]

    def render_json(results: list[SeqResult]):
        objs = [one(i, r.text, r.token_ids, r.finish_reason, r.stats, r.logprobs, r.prompt_logprobs)
                for i, r in enumerate(results)]
        return objs if body.is_batch else objs[0]

    async def render_frames(started: StartedStream):
        async for ev in started.events():
            r = started.gen.results[ev.index]  # may already hold later chunks: cut it at this event
            obj = one(ev.index, r.text[: ev.text_len], r.token_ids[: ev.num_tokens], ev.finish_reason, ev.stats,
                      r.logprobs[: ev.num_tokens], r.prompt_logprobs)
            yield frame({**obj, "index": ev.index} if body.is_batch else obj)
        yield DONE

    outcome = await run(request, state, specs, arrived_at, stream=body.stream)
    if not body.stream:
        return JSONResponse(render_json(outcome))
    return stream_response(outcome, render_frames(outcome))
