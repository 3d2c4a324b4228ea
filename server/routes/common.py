"""What every generation route does: check the model, admit, run, map backend errors to HTTP.

A route reads as parse -> run -> render: `run` answers the finished results (plain requests) or a
`StartedStream` (its first event has arrived); the route renders them itself, and
`stream_response` wraps a stream's frames so a late failure still reaches the client."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request

from ..backends.base import BackendError, GenRequest, ModelInfo
from ..errors import APIError, internal, model_not_found, unavailable
from ..generation import Generation, SeqEvent, SeqResult, SeqSpec
from ..logprobs import LogprobRequest
from ..schemas import MAX_SEED
from ..outcomes import set_outcome
from ..sse import DONE, EventStream, frame, until_disconnect
from ..state import GatewayState, ShuttingDown

log = logging.getLogger("orthrus.gateway")


@dataclass
class StartedStream:
    """A streamed generation whose first event has arrived; it holds the admission slot until the
    response built by `stream_response` ends."""

    first: SeqEvent
    rest: AsyncIterator[SeqEvent]  # the generation's events after `first`
    gen: Generation  # gen.results: each sequence's text, tokens and logprobs so far
    slot: object  # the Admission slot: released when the response ends
    scope: dict  # the ASGI scope: a late failure sets the request's outcome status

    async def events(self) -> AsyncIterator[SeqEvent]:
        yield self.first
        async for ev in self.rest:
            yield ev


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def check_model(state: GatewayState, model: str | None, info: ModelInfo) -> None:
    """The served id, the --model string and the backend's model path all name the one model."""
    allowed = {state.settings.model_id, state.settings.model, info.model_path}
    if model is not None and model not in allowed:
        raise model_not_found(model)


def api_error(e: Exception) -> APIError:
    if isinstance(e, APIError):
        return e
    if isinstance(e, ShuttingDown):
        return unavailable("The server is shutting down; the request was stopped.")
    if isinstance(e, BackendError):
        if e.status == 503:
            return unavailable(e.message)
        if 400 <= e.status < 500:
            return APIError(e.status, e.message)
        return APIError(e.status, e.message, type="server_error", code="backend_error")
    return internal()


async def model_info(state: GatewayState) -> ModelInfo:
    try:
        return await state.backend.model_info()
    except BackendError as e:
        raise api_error(e)


def seq_specs(prompts: list[list[int]], budgets: list[int], n: int, body, stop: list[str],
              logprobs: LogprobRequest | None = None) -> list[SeqSpec]:
    specs = []
    for p, (prompt_ids, max_new) in enumerate(zip(prompts, budgets)):
        for j in range(n):
            seed = None if body.seed is None else (body.seed + j) % (MAX_SEED + 1)
            req = GenRequest(prompt_ids=prompt_ids, max_new_tokens=max_new,
                             temperature=0.0 if body.temperature is None else body.temperature,
                             top_p=1.0 if body.top_p is None else body.top_p,
                             top_k=max(body.top_k or 0, 0), min_p=body.min_p or 0.0, seed=seed, ignore_eos=body.ignore_eos,
                             ar_only=body.ar_only, logprobs=logprobs)
            specs.append(SeqSpec(p * n + j, req, stop))
    return specs


async def run(request: Request, state: GatewayState, specs: list[SeqSpec], arrived_at: float, *,
              stream: bool) -> list[SeqResult] | StartedStream:
    """Admit the request and run it: the results in order, or (stream) the started stream.

    Requests are counted by outcome status in server.outcomes; sequences stopped half-way in `Generation`."""
    if state.draining:
        raise unavailable("The server is shutting down.")
    slot = await until_disconnect(request.receive, state.admission.acquire())
    state.metrics.prompt_tokens.inc(sum(len(s.req.prompt_ids) for s in specs))
    release_now = True  # unless a stream takes the slot over
    try:
        tokenizer = (await model_info(state)).tokenizer
        gen = Generation(state, tokenizer, specs, arrived_at)
        if not stream:
            return await until_disconnect(request.receive, gen.run())
        events = gen.events()
        try:
            first = await until_disconnect(request.receive, anext(events))
        except BaseException:
            await events.aclose()
            raise
        release_now = False
        return StartedStream(first, events, gen, slot, request.scope)
    except (BackendError, ShuttingDown) as e:
        raise api_error(e)
    finally:
        if release_now:
            slot.release()


def stream_response(started: StartedStream, frames: AsyncIterator[bytes]) -> EventStream:
    """The SSE response for a started stream's rendered frames; it releases the slot when it ends."""
    return EventStream(_guarded(frames, started.rest, started.scope), cleanup=started.slot.release)


async def _guarded(frames: AsyncIterator[bytes], events: AsyncIterator[SeqEvent], scope: dict) -> AsyncIterator[bytes]:
    """Once the stream has started, a failure becomes an error event followed by [DONE]."""
    try:
        async for chunk in frames:
            yield chunk
    except Exception as e:  # BackendError, ShuttingDown, or a bug (logged): the client still hears why
        if not isinstance(e, (BackendError, ShuttingDown)):
            log.exception("stream failed")
        err = api_error(e)
        set_outcome(scope, err.status)
        yield frame(err.body())
        yield DONE
    finally:
        await frames.aclose()
        await events.aclose()  # renderers wrap it; close it explicitly so its sequences abort now


def usage(prompts: list[list[int]], results: list[SeqResult]) -> dict:
    prompt_tokens = sum(len(p) for p in prompts)
    completion_tokens = sum(len(r.token_ids) for r in results)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def now_s() -> int:
    return int(time.time())
