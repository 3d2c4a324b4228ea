"""/v1/models, /v1/chat/completions and /v1/completions (OpenAI wire format + `orthrus` stats)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request

from ..body import read_json
from ..deps import gateway, require_api_key
from ..errors import model_not_found
from ..generation import Generation, SeqEvent, SeqResult
from ..prompting import budget, chat_prompt_ids, checked_token_ids, text_prompt_ids
from ..schemas import ChatCompletionRequest, CompletionRequest
from ..sse import DONE, frame
from ..stats import merge_all
from .common import check_model, model_info, new_id, now_s, run, seq_specs, usage

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.get("/v1/models")
async def list_models(request: Request):
    state = gateway(request)
    return {"object": "list", "data": [_model_card(state)]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request):
    state = gateway(request)
    if model_id not in (state.settings.model_id, state.settings.model):
        raise model_not_found(model_id)
    return _model_card(state)


def _model_card(state) -> dict:
    return {"id": state.settings.model_id, "object": "model", "created": int(state.started_at), "owned_by": "orthrus",
            "backend": state.backend.kind}


def _orthrus(results: list[SeqResult]) -> dict | None:
    stats = merge_all([r.stats for r in results])
    return stats.to_json() if stats else None


def _choice_extra(body, r: SeqResult) -> dict:
    """Per-choice additions: the choice's own Orthrus stats, and its token ids when asked for."""
    extra = {"orthrus": r.stats.to_json()} if r.stats else {}
    return {**extra, "token_ids": r.token_ids} if body.return_token_ids else extra


@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    arrived_at = time.monotonic()
    state = gateway(request)
    body = await read_json(request, ChatCompletionRequest)
    info = await model_info(state)
    check_model(state, body.model, info)
    prompt = chat_prompt_ids(info, body.chat_messages())
    param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    max_new = budget(info, len(prompt), body.max_new_tokens, param=param, prompt_param="messages")
    specs = seq_specs([prompt], [max_new], body.n, body, body.stop_list)
    rid, created, model = new_id("chatcmpl"), now_s(), state.settings.model_id

    def choice_extra(r: SeqResult) -> dict:
        return _choice_extra(body, r)

    def render_json(results: list[SeqResult]) -> dict:
        choices = [{"index": r.index, "message": {"role": "assistant", "content": r.text},
                    "finish_reason": r.finish_reason, "logprobs": None, **choice_extra(r)} for r in results]
        return {"id": rid, "object": "chat.completion", "created": created, "model": model, "choices": choices,
                "usage": usage([prompt], results), "orthrus": _orthrus(results)}

    async def render_frames(first: SeqEvent, rest: AsyncIterator[SeqEvent], gen: Generation):
        def chunk(choices: list, **extra) -> bytes:
            return frame({"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                          "choices": choices, **extra})

        for spec in specs:
            yield chunk([{"index": spec.index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        async for ev in _chain(first, rest):
            if ev.text or (body.return_token_ids and ev.token_ids):
                delta = {"content": ev.text, **({"token_ids": ev.token_ids} if body.return_token_ids else {})}
                yield chunk([{"index": ev.index, "delta": delta, "finish_reason": None}])
            if ev.finish_reason is not None:
                stats = {"orthrus": ev.stats.to_json()} if ev.stats else {}
                yield chunk([{"index": ev.index, "delta": {}, "finish_reason": ev.finish_reason}], **stats)
        if body.include_usage:
            results = list(gen.results.values())
            yield chunk([], usage=usage([prompt], results), orthrus=_orthrus(results))
        yield DONE

    return await run(request, state, specs, arrived_at, stream=body.stream, render_frames=render_frames,
                     render_json=render_json, route="chat")


@router.post("/v1/completions")
async def completions(request: Request):
    arrived_at = time.monotonic()
    state = gateway(request)
    body = await read_json(request, CompletionRequest)
    info = await model_info(state)
    check_model(state, body.model, info)
    prompts = [text_prompt_ids(info, p) if isinstance(p, str) else checked_token_ids(info, p, f"prompt[{i}]")
               for i, p in enumerate(body.prompt)]
    budgets = [budget(info, len(p), body.max_new_tokens) for p in prompts]
    specs = seq_specs(prompts, budgets, body.n, body, body.stop_list)
    rid, created, model = new_id("cmpl"), now_s(), state.settings.model_id

    def choice_extra(r: SeqResult) -> dict:
        return _choice_extra(body, r)

    def render_json(results: list[SeqResult]) -> dict:
        choices = [{"index": r.index, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None,
                    **choice_extra(r)} for r in results]
        return {"id": rid, "object": "text_completion", "created": created, "model": model, "choices": choices,
                "usage": usage(prompts, results), "orthrus": _orthrus(results)}

    async def render_frames(first: SeqEvent, rest: AsyncIterator[SeqEvent], gen: Generation):
        def chunk(choices: list, **extra) -> bytes:
            return frame({"id": rid, "object": "text_completion", "created": created, "model": model,
                          "choices": choices, **extra})

        async for ev in _chain(first, rest):
            finish = ev.finish_reason
            if ev.text or finish is not None or (body.return_token_ids and ev.token_ids):
                c = {"index": ev.index, "text": ev.text, "finish_reason": finish, "logprobs": None}
                if body.return_token_ids:
                    c["token_ids"] = ev.token_ids
                stats = {"orthrus": ev.stats.to_json()} if finish and ev.stats else {}
                yield chunk([c], **stats)
        if body.include_usage:
            results = list(gen.results.values())
            yield chunk([], usage=usage(prompts, results), orthrus=_orthrus(results))
        yield DONE

    return await run(request, state, specs, arrived_at, stream=body.stream, render_frames=render_frames,
                     render_json=render_json, route="completions")


async def _chain(first: SeqEvent, rest: AsyncIterator[SeqEvent]) -> AsyncIterator[SeqEvent]:
    yield first
    async for ev in rest:
        yield ev
