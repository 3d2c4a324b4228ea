"""Server-sent events, and cancellation when the client goes away.

Our own small ASGI response instead of StreamingResponse: it always runs `cleanup` (the
admission slot), and it cancels the event producer as soon as the client disconnects, which
closes the generation and aborts its sequences in the backend.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import Response

log = logging.getLogger("orthrus.gateway")

DONE = b"data: [DONE]\n\n"


class ClientDisconnected(Exception):
    """The client went away before the answer was ready (logged as status 499)."""


def frame(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def wait_for_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStream(Response):
    # A Response subclass only so that FastAPI passes it through untouched; __call__ is all ours.
    media_type = "text/event-stream"

    def __init__(self, frames: AsyncIterator[bytes], cleanup: Callable[[], None] | None = None):
        self.frames, self.cleanup = frames, cleanup
        self.status_code, self.background = 200, None

    async def __call__(self, scope, receive, send) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no")]
        producer = asyncio.ensure_future(self._produce(send, headers))
        watcher = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (producer, watcher):
                task.cancel()
            await asyncio.gather(producer, watcher, return_exceptions=True)
            if self.cleanup is not None:
                self.cleanup()
        if producer.done() and not producer.cancelled() and producer.exception() is not None:
            log.error("SSE producer failed", exc_info=producer.exception())

    async def _produce(self, send, headers) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for chunk in self.frames:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.frames.aclose()


async def until_disconnect(receive, work: Awaitable):
    """Await `work`, cancelling it if the client disconnects first (then raise ClientDisconnected)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    if task.cancelled() or not task.done():
        await asyncio.gather(task, return_exceptions=True)
        raise ClientDisconnected()
    return task.result()
