"""/v1/models, /v1/chat/completions and /v1/completions (OpenAI wire format + `orthrus` stats)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..body import read_json
from ..deps import gateway, require_api_key
from ..errors import bad_request, model_not_found
from ..generation import SeqResult
from ..logprob_formats import merge_completion, openai_chat, openai_completion
from ..logprobs import LogprobRequest, TokenTexts
from ..prompting import budget, chat_prompt_ids, checked_token_ids, text_prompt_ids
from ..schemas import ChatCompletionRequest, CompletionRequest
from ..sse import DONE, frame
from ..stats import merge_all
from .common import StartedStream, check_model, model_info, new_id, now_s, run, seq_specs, stream_response, usage

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
    top = body.top_logprobs or 0
    specs = seq_specs([prompt], [max_new], body.n, body, body.stop_list,
                      LogprobRequest(top_k=top) if body.logprobs else None)
    rid, created, model = new_id("chatcmpl"), now_s(), state.settings.model_id
    texts = TokenTexts(info.tokenizer)

    def choice_extra(r: SeqResult) -> dict:
        return _choice_extra(body, r)

    def logprobs(token_ids, lps) -> dict | None:
        return openai_chat(token_ids, lps, texts, top) if body.logprobs else None

    def render_json(results: list[SeqResult]) -> dict:
        choices = [{"index": r.index, "message": {"role": "assistant", "content": r.text},
                    "finish_reason": r.finish_reason, "logprobs": logprobs(r.token_ids, r.logprobs),
                    **choice_extra(r)} for r in results]
        return {"id": rid, "object": "chat.completion", "created": created, "model": model, "choices": choices,
                "usage": usage([prompt], results), "orthrus": _orthrus(results)}

    async def render_frames(started: StartedStream):
        def chunk(choices: list, **extra) -> bytes:
            return frame({"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                          "choices": choices, **extra})

        for spec in specs:
            yield chunk([{"index": spec.index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        async for ev in started.events():
            if ev.text or ((body.return_token_ids or body.logprobs) and ev.token_ids):
                delta = {"content": ev.text, **({"token_ids": ev.token_ids} if body.return_token_ids else {})}
                lps = {"logprobs": logprobs(ev.token_ids, ev.logprobs)} if body.logprobs else {}
                yield chunk([{"index": ev.index, "delta": delta, **lps, "finish_reason": None}])
            if ev.finish_reason is not None:
                stats = {"orthrus": ev.stats.to_json()} if ev.stats else {}
                yield chunk([{"index": ev.index, "delta": {}, "finish_reason": ev.finish_reason}], **stats)
        if body.include_usage:
            results = list(started.gen.results.values())
            yield chunk([], usage=usage([prompt], results), orthrus=_orthrus(results))
        yield DONE

    outcome = await run(request, state, specs, arrived_at, stream=body.stream)
    if not body.stream:
        return JSONResponse(render_json(outcome))
    return stream_response(outcome, render_frames(outcome))


@router.post("/v1/completions")
async def completions(request: Request):
    arrived_at = time.monotonic()
    state = gateway(request)
    body = await read_json(request, CompletionRequest)
    info = await model_info(state)
    check_model(state, body.model, info)
    prompts = [text_prompt_ids(info, p) if isinstance(p, str) else checked_token_ids(info, p, f"prompt[{i}]")
               for i, p in enumerate(body.prompt)]
    if body.max_tokens == 0 and not body.echo:
        raise bad_request("Invalid value for 'max_tokens': Input should be greater than or equal to 1 (0 only with "
                          "`echo`, to score the prompt).", param="max_tokens")
    budgets = [budget(info, len(p), body.max_new_tokens) for p in prompts]
    want = body.logprobs is not None
    specs = seq_specs(prompts, budgets, body.n, body, body.stop_list,
                      LogprobRequest(top_k=body.logprobs, prompt_start=0 if body.echo else None) if want else None)
    rid, created, model = new_id("cmpl"), now_s(), state.settings.model_id
    texts = TokenTexts(info.tokenizer)
    echoes = [(p if isinstance(p, str) else info.tokenizer.decode(ids)) if body.echo else ""
              for p, ids in zip(body.prompt, prompts)]
    offsets: dict[int, int] = {}  # choice -> text offset of its next logprob token

    def choice_extra(r: SeqResult) -> dict:
        return _choice_extra(body, r)

    def opening(index: int, prompt_logprobs) -> tuple[str, dict | None]:
        """A choice's echoed prompt: its text, and its logprobs when asked for."""
        p = index // body.n
        offsets[index] = len(echoes[p])
        if not (want and body.echo):
            return echoes[p], None
        return echoes[p], openai_completion(prompts[p], prompt_logprobs or [], texts, 0)

    def logprobs(index: int, token_ids, lps) -> dict | None:
        if not want:
            return None
        out = openai_completion(token_ids, lps, texts, offsets[index])
        offsets[index] += sum(len(t) for t in out["tokens"])
        return out

    def render_json(results: list[SeqResult]) -> dict:
        choices = []
        for r in results:
            echo, echo_lps = opening(r.index, r.prompt_logprobs)
            lps = logprobs(r.index, r.token_ids, r.logprobs)
            choices.append({"index": r.index, "text": echo + r.text, "finish_reason": r.finish_reason,
                            "logprobs": merge_completion(echo_lps, lps) if want else None, **choice_extra(r)})
        return {"id": rid, "object": "text_completion", "created": created, "model": model, "choices": choices,
                "usage": usage(prompts, results), "orthrus": _orthrus(results)}

    async def render_frames(started: StartedStream):
        def chunk(choices: list, **extra) -> bytes:
            return frame({"id": rid, "object": "text_completion", "created": created, "model": model,
                          "choices": choices, **extra})

        gen = started.gen
        async for ev in started.events():
            finish = ev.finish_reason
            started = ev.index in offsets
            echo, echo_lps = ("", None) if started else opening(ev.index, gen.results[ev.index].prompt_logprobs)
            if echo or ev.text or finish is not None or ((body.return_token_ids or want) and ev.token_ids):
                lps = logprobs(ev.index, ev.token_ids, ev.logprobs)
                c = {"index": ev.index, "text": echo + ev.text, "finish_reason": finish,
                     "logprobs": merge_completion(echo_lps, lps) if want else None}
                if body.return_token_ids:
                    c["token_ids"] = ev.token_ids
                stats = {"orthrus": ev.stats.to_json()} if finish and ev.stats else {}
                yield chunk([c], **stats)
        if body.include_usage:
            results = list(gen.results.values())
            yield chunk([], usage=usage(prompts, results), orthrus=_orthrus(results))
        yield DONE

    outcome = await run(request, state, specs, arrived_at, stream=body.stream)
    if not body.stream:
        return JSONResponse(render_json(outcome))
    return stream_response(outcome, render_frames(outcome))
