"""Request limits: body size (ASGI middleware) and admission (concurrency + queue -> 429)."""

from __future__ import annotations

import asyncio
import json

from .errors import APIError, overloaded


class BodyTooLarge(APIError):
    def __init__(self, limit: int):
        super().__init__(413, f"The request body is larger than the limit of {limit} bytes.",
                         code="request_too_large")


class BodySizeLimit:
    """Refuse bodies over `max_bytes`: up front from Content-Length, else while reading (chunked)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _send_error(send, BodyTooLarge(self.max_bytes))
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # an APIError: the app's handler answers 413
            return message

        await self.app(scope, limited_receive, send)


async def _send_error(send, err: APIError) -> None:
    body = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Admission:
    """At most `max_active` requests generate at once; up to `max_queue` more wait in FIFO order."""

    def __init__(self, max_active: int, max_queue: int, retry_after_s: int):
        self.max_active, self.max_queue, self.retry_after_s = max_active, max_queue, retry_after_s
        self.active = 0
        self.waiting: list[asyncio.Future] = []

    async def acquire(self) -> Slot:
        if self.active < self.max_active and not self.waiting:
            self.active += 1
            return Slot(self)
        if len(self.waiting) >= self.max_queue:
            raise overloaded(self.retry_after_s)
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        try:
            await fut  # resolved by _release, which hands its slot over (active stays the same)
        except BaseException:
            if fut in self.waiting:
                self.waiting.remove(fut)
            elif fut.done() and not fut.cancelled():
                self._release()  # we were handed a slot just as we gave up: pass it on
            raise
        return Slot(self)

    def _release(self) -> None:
        while self.waiting:
            fut = self.waiting.pop(0)
            if not fut.done():
                fut.set_result(None)
                return
        self.active -= 1


class Slot:
    def __init__(self, admission: Admission):
        self._admission: Admission | None = admission

    def release(self) -> None:
        """Idempotent: the stream's cleanup and the route's error path may both call it."""
        if self._admission is not None:
            self._admission._release()
            self._admission = None
