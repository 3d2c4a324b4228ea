"""Run one HTTP request's sequences (n x prompts) on the backend, with text, stops and metrics.

`events()` merges the sequences' deltas in arrival order (for streaming); `run()` waits for all
of them. Leaving either early (client gone, error, shutdown) aborts every unfinished
sequence in the backend, because each runs inside `async with backend.generate(...)`;
finished ones are left to close their streams, and both are waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .backends.base import BackendError, GenRequest, wait_shielded
from .detok import TextAssembler
from .logprobs import TokenLogprob
from .state import GatewayState
from .stats import OrthrusStats


@dataclass
class SeqSpec:
    index: int
    req: GenRequest
    stop: list[str] = field(default_factory=list)
    skip_special_tokens: bool = True


@dataclass
class SeqEvent:
    index: int
    text: str  # newly released text
    token_ids: list[int]  # newly committed tokens
    finish_reason: str | None
    stats: OrthrusStats | None
    text_len: int = 0  # released text so far, this event's included (results may run ahead of the queue)
    num_tokens: int = 0  # tokens so far, this event's included
    logprobs: list[TokenLogprob] = field(default_factory=list)  # of token_ids, when asked for


@dataclass
class SeqResult:
    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    stats: OrthrusStats | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)  # one per token id, when asked for
    prompt_logprobs: list[TokenLogprob] | None = None  # when asked for


class Generation:
    def __init__(self, state: GatewayState, tokenizer, specs: list[SeqSpec], arrived_at: float):
        self.state, self.tokenizer, self.specs = state, tokenizer, specs
        self.arrived_at = arrived_at  # time.monotonic() at request arrival
        self.results = {s.index: SeqResult(s.index) for s in specs}
        self._queue: asyncio.Queue = asyncio.Queue()
        self._first_token_seen = False
        self._started: set[int] = set()  # sequences handed to the backend
        self._failed = False  # a sequence failed: the request is an error, its unfinished siblings are not aborts

    @property
    def num_finished(self) -> int:
        return sum(r.finish_reason is not None for r in self.results.values())

    async def events(self) -> AsyncIterator[SeqEvent]:
        tasks = [asyncio.create_task(self._run_one(spec)) for spec in self.specs]
        self.state.inflight.add(self._queue)
        try:
            remaining = len(self.specs)
            while remaining:
                item = await self._queue.get()
                if isinstance(item, BaseException):
                    self._failed = isinstance(item, BackendError)
                    raise item
                yield item
                remaining -= item.finish_reason is not None
        finally:
            self.state.inflight.discard(self._queue)
            for spec, t in zip(self.specs, tasks):
                # A finished sequence may still be closing its stream; cancelling that close leaked its
                # connection to SGLang (issue 24). Only unfinished ones are stopped.
                if self.results[spec.index].finish_reason is None:
                    t.cancel()
            try:  # even if we are cancelled meanwhile: every task's stream is closed before we return
                await wait_shielded(asyncio.gather(*tasks, return_exceptions=True))
            finally:
                self._account()

    async def run(self) -> list[SeqResult]:
        async for _ in self.events():
            pass
        return [self.results[s.index] for s in self.specs]

    async def _run_one(self, spec: SeqSpec) -> None:
        self._started.add(spec.index)
        try:
            text = TextAssembler(self.tokenizer, spec.stop, spec.skip_special_tokens)
            result = self.results[spec.index]
            result.token_ids = text.token_ids  # shared, so that it grows without copies
            last_at, last_steps = None, 0
            async with self.state.backend.generate(spec.req) as stream:
                async for chunk in stream:
                    now = time.monotonic()
                    self._observe_timing(now, last_at, len(chunk.token_ids))
                    last_at = now
                    steps = chunk.stats.num_steps if chunk.stats else last_steps
                    self.state.live.on_chunk(len(chunk.token_ids), steps - last_steps)
                    last_steps = steps
                    finished = chunk.finish_reason is not None
                    new_logprobs = list(chunk.logprobs or [])
                    result.logprobs += new_logprobs
                    if chunk.prompt_logprobs is not None:
                        result.prompt_logprobs = list(chunk.prompt_logprobs)
                    delta = text.push(chunk.token_ids, finished)
                    finish = "stop" if text.stopped else chunk.finish_reason
                    result.text = text.text
                    result.stats = chunk.stats or result.stats
                    result.finish_reason = finish
                    self._queue.put_nowait(SeqEvent(spec.index, delta, list(chunk.token_ids), finish, result.stats,
                                                    len(text.text), len(text.token_ids), new_logprobs))
                    if finish is not None:
                        return  # a stop string may end it early: leaving `async with` aborts the rest
            raise BackendError(502, "The backend ended a sequence without finishing it.")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._queue.put_nowait(e)

    def _observe_timing(self, now: float, last_at: float | None, num_tokens: int) -> None:
        m = self.state.metrics
        if num_tokens == 0:
            return
        if not self._first_token_seen:
            self._first_token_seen = True
            m.ttft.observe(now - self.arrived_at)
        if last_at is not None:
            gap = (now - last_at) / num_tokens
            for _ in range(num_tokens):
                m.itl.observe(gap)

    def _account(self) -> None:
        m, live = self.state.metrics, self.state.live
        for r in self.results.values():
            m.generation_tokens.inc(len(r.token_ids))
            if r.finish_reason is None:
                if r.index in self._started and not self._failed:
                    m.aborted.inc()  # started, then stopped: client gone or shutdown (failures count by status)
            else:
                m.observe_sequence(r.stats)
                live.on_sequence_done(r.stats)
        if self.num_finished == len(self.specs):
            m.e2e.observe(time.monotonic() - self.arrived_at)
