"""The one thread that owns the reference engine.

The engine is synchronous and not thread-safe, so only this thread calls add_request, abort
and step. The event loop talks to it through an inbox (commands) and per-sequence sinks
(callbacks that hand chunks back to the loop with call_soon_threadsafe). Requests join and
leave between steps: that is the continuous batching.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from ..stats import OrthrusStats
from .base import BackendError, BackendUnavailable, GenChunk

log = logging.getLogger("orthrus.gateway")

Sink = Callable[[object], None]  # receives a GenChunk or an exception; called from the worker thread


class EngineWorker:
    def __init__(self, engine):
        self.engine = engine
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._sinks: dict[str, Sink] = {}
        self._stopping = False
        # Read from other threads without a lock: plain ints, replaced whole.
        self.num_steps = 0
        self.num_aborted = 0
        self.running = 0
        self.waiting = 0
        self.peak_running = 0  # most sequences decoded in one step: shows the batching at work
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="orthrus-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, request_id: str, prompt_ids: list[int], params, ar_only: bool, logprobs, sink: Sink) -> None:
        """logprobs: an orthrus_sglang.logprobs.LogprobRequest, or None."""
        self._inbox.put(("add", request_id, prompt_ids, params, ar_only, logprobs, sink))
        self._wake.set()

    def abort(self, request_id: str) -> None:
        self._inbox.put(("abort", request_id))
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Fail every open sequence with 503 and end the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    # ---- worker thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._drain_inbox()
            if self._stopping:
                self._fail_all(BackendUnavailable("The server is shutting down."))
                return
            if not self.engine.has_unfinished():
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
            except Exception as e:  # the engine's state for these requests is gone: fail them, keep serving
                log.exception("engine step failed")
                self.last_error = f"{type(e).__name__}: {e}"
                self._fail_all(BackendError(500, "The engine failed while decoding this request."))
                continue
            self.num_steps += 1
            for out in outputs:
                sink = self._sinks.get(out.request_id)
                if sink is None:
                    continue
                if out.finished:
                    del self._sinks[out.request_id]
                if out.finished and out.finish_reason not in ("stop", "length"):
                    sink(BackendError(500, f"The engine ended the request ({out.finish_reason})."))
                    continue
                # Copy the stats now: the engine keeps mutating its own object.
                sink(GenChunk(list(out.new_token_ids), out.finish_reason if out.finished else None,
                              OrthrusStats.from_decode_stats(out.stats), out.logprobs, out.prompt_logprobs))
            self._update_load()

    def _drain_inbox(self) -> None:
        while True:
            try:
                cmd = self._inbox.get_nowait()
            except queue.Empty:
                break
            if cmd[0] == "add":
                _, request_id, prompt_ids, params, ar_only, logprobs, sink = cmd
                try:
                    self.engine.add_request(prompt_ids, params, request_id=request_id, ar_only=ar_only,
                                            logprobs=logprobs)
                except ValueError as e:
                    sink(BackendError(400, str(e)))
                    continue
                self._sinks[request_id] = sink
            else:
                request_id = cmd[1]
                if self._sinks.pop(request_id, None) is not None:
                    self.engine.abort(request_id)
                    self.num_aborted += 1
        self._update_load()

    def _fail_all(self, error: BackendError) -> None:
        for request_id, sink in list(self._sinks.items()):
            self.engine.abort(request_id)
            sink(error)
        self._sinks.clear()
        self._update_load()

    def _update_load(self) -> None:
        self.running, self.waiting = self.engine.num_running, self.engine.num_waiting
        self.peak_running = max(self.peak_running, self.running)
