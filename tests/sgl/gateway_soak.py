"""A soak driver for the gateway in front of SGLang: a mixed request load, sockets counted, a report.

Requests cycle through ten kinds (completions/chat, plain/streamed, n=2, stop strings that end a
sequence early, native /generate, client hang-ups mid-stream and mid-request). At most `concurrency`
sequences are in flight at once (n=2 takes two). A watcher thread counts the gateway process's TCP
sockets to the backend's port (psutil) every 20 ms; the gateway's pool keeps idle connections for
reuse, so the bound is the concurrency plus a few (a /health probe, an abort going out while the
next request starts), never the number of requests served.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil

CONCURRENCY = 8  # sequences in flight at most
OK = {"200", "hangup"}  # a non-streamed hang-up answered within its 0.3 s is a plain 200
SOAK_REQUESTS = int(os.environ.get("ORTHRUS_SOAK_REQUESTS", "300"))  # 300 in CI; the full soak: 1000
PROMPTS = [f"Soak prompt {i}: tell me about the number {i * 7}." for i in range(8)]
TIMEOUT = 120  # seconds per request: nothing may take this long (a hang is a failure)
HANGUP_TIMEOUT = 0.3  # a non-streamed request's client gives up after this long


class _Sampler:
    """A daemon thread running `_run` between `with` entry and exit (`_stop` ends it)."""

    join_s = 10.0

    def __init__(self, name: str):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(self.join_s)


class SocketWatch(_Sampler):
    """Samples the gateway's connections to `port`; `violation` is set once more than `limit` stay open for
    `hold_s` (every sample over that time). A leak only grows, so it always persists; a client hangup's
    abort request and the stream it cancels overlap for a moment (13 of limit 12 for one 20 ms sample, two
    of them CLOSE_WAIT, on a loaded 2-core CI machine), which is not a leak."""

    def __init__(self, pid: int, port: int, limit: int, interval: float = 0.02, hold_s: float = 1.0):
        self.proc, self.port, self.limit, self.interval, self.hold_s = psutil.Process(pid), port, limit, interval, hold_s
        self.max_open, self.samples, self.ports = 0, 0, set()
        self.over_since: float | None = None  # first sample of the current run over the limit
        self.violation: str | None = None
        super().__init__("socket-watch")

    def connections(self) -> list:
        return [c for c in self.proc.net_connections(kind="tcp") if c.raddr and c.raddr.port == self.port]

    def open_count(self) -> int:
        return len(self.connections())

    def _run(self) -> None:
        while not self._stop.is_set():
            conns = self.connections()
            self.samples += 1
            self.max_open = max(self.max_open, len(conns))
            self.ports.update(c.laddr.port for c in conns)
            now = time.monotonic()
            if len(conns) <= self.limit:
                self.over_since = None
            elif self.over_since is None:
                self.over_since = now
            elif now - self.over_since >= self.hold_s and self.violation is None:
                states = Counter(c.status for c in conns)
                self.violation = (f"{len(conns)} connections open to port {self.port} (limit {self.limit}) for "
                                  f"{now - self.over_since:.1f} s: {dict(states)}")
            time.sleep(self.interval)

class HealthProbe(_Sampler):
    """GET /health every `every` seconds: latencies and statuses."""

    join_s = 40.0  # a probe may be waiting on its 30 s timeout

    def __init__(self, url: str, every: float = 1.0):
        self.url, self.every = url, every
        self.latencies: list[float] = []
        self.by_status: dict = {}  # answer -> latencies: healthy answers and outage answers are apart
        super().__init__("health-probe")

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.wait(self.every):
                t = time.monotonic()
                try:
                    answer = client.get(self.url + "/health").status_code
                except httpx.HTTPError as e:
                    answer = type(e).__name__
                self.latencies.append(time.monotonic() - t)
                self.by_status.setdefault(answer, []).append(self.latencies[-1])

    @staticmethod
    def _spread(seconds: list[float]) -> str:
        ms = sorted(x * 1000 for x in seconds)
        return f"median {statistics.median(ms):.0f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.0f} ms, max {ms[-1]:.0f} ms"

    def summary(self) -> str:
        if not self.latencies:
            return "no samples"
        parts = [f"{answer}: {len(v)} probes, {self._spread(v)}" for answer, v in self.by_status.items()]
        return f"{len(self.latencies)} probes, {self._spread(self.latencies)} ({'; '.join(parts)})"


class SequenceSlots:
    """At most `size` sequences in flight: a request with n choices takes n slots at once."""

    def __init__(self, size: int):
        self.size, self.used = size, 0
        self._cond = threading.Condition()

    def take(self, n: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.used + n <= self.size)
            self.used += n

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


class Driver:
    def __init__(self, url: str, concurrency: int = 8):
        self.url, self.concurrency = url, concurrency
        self.slots = SequenceSlots(concurrency)
        self.stops: dict[tuple[str, int], str] = {}
        self.sent = self.finished = 0  # requests run by one(); prepare() sends len(stops) more
        self._local = threading.local()

    def client(self) -> httpx.Client:
        if not hasattr(self._local, "client"):  # one keep-alive client per worker thread
            self._local.client = httpx.Client(base_url=self.url, timeout=TIMEOUT)
        return self._local.client

    def prepare(self) -> None:
        """Stop strings that surely end a sequence early: two characters from the middle of its greedy text."""
        for p in range(len(PROMPTS)):
            for route in ("completions", "chat"):
                r = self.client().post(f"/v1/{'chat/' if route == 'chat' else ''}completions",
                                       json=self._body(route, p, 24))
                r.raise_for_status()
                c = r.json()["choices"][0]
                text = c["text"] if route == "completions" else c["message"]["content"]
                cut = next((i for i in range(6, len(text) - 1) if text[i:i + 2].isprintable()
                            and "\ufffd" not in text[i:i + 2] and text.find(text[i:i + 2]) == i), None)
                self.stops[(route, p)] = text[cut:cut + 2] if cut is not None else "\x00"

    def _body(self, route: str, p: int, max_tokens: int, **extra) -> dict:
        base = {"max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, **extra}
        if route == "chat":
            return {"messages": [{"role": "user", "content": PROMPTS[p]}], **base}
        return {"prompt": PROMPTS[p], **base}

    def one(self, i: int) -> dict:
        """Run request i (its kind is i % 10); its outcome: label (status, "hangup", an error), stopped, seconds."""
        kind, p = i % 10, i % len(PROMPTS)
        c = self.client()
        stop = {"completions": self.stops.get(("completions", p), "\x00"), "chat": self.stops.get(("chat", p), "\x00")}
        plan = {  # kind -> (path, body, n, how)
            0: ("/v1/completions", self._body("completions", p, 12), 1, "json"),
            1: ("/v1/completions", self._body("completions", p, 12, stream=True), 1, "stream"),
            2: ("/v1/chat/completions", self._body("chat", p, 12), 1, "json"),
            3: ("/v1/chat/completions", self._body("chat", p, 12, stream=True,
                                                   stream_options={"include_usage": True}), 1, "stream"),
            4: ("/v1/completions", self._body("completions", p, 10, n=2), 2, "json"),
            5: ("/v1/completions", self._body("completions", p, 24, stream=True, stop=[stop["completions"]]), 1,
                "stream"),
            6: ("/v1/chat/completions", self._body("chat", p, 24, n=2, stream=True, stop=[stop["chat"]]), 2, "stream"),
            7: ("/generate", {"text": PROMPTS[p], "stream": True,
                              "sampling_params": {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}}, 1,
                "stream"),
            8: ("/v1/completions", self._body("completions", p, 24, stop=[stop["completions"]]), 1, "json"),
            9: ("/v1/completions", self._body("completions", p, 200, stream=(i // 10) % 2 == 0), 1, "hangup"),
        }
        path, body, n, how = plan[kind]
        self.slots.take(n)
        self.sent += 1
        start = time.monotonic()
        try:
            label, stopped = self._send(c, path, body, how)
        except httpx.HTTPError as e:
            label, stopped = type(e).__name__, False
            self._local.__dict__.pop("client", None)  # a broken connection: start a fresh client
            c.close()
        finally:
            self.slots.give(n)
            self.finished += 1
        end = time.monotonic()
        return {"i": i, "kind": kind, "label": label, "stopped": stopped, "seconds": end - start, "t_start": start,
                "t_end": end}

    def _send(self, c: httpx.Client, path: str, body: dict, how: str) -> tuple[str, bool]:
        if how == "hangup" and not body.get("stream"):
            try:
                r = c.post(path, json=body, timeout=HANGUP_TIMEOUT)
            except httpx.ReadTimeout:
                self._local.__dict__.pop("client", None)
                c.close()
                return "hangup", False
            return str(r.status_code), False
        if how == "json":
            r = c.post(path, json=body)
            if r.status_code != 200:
                return str(r.status_code), False
            return "200", any(ch.get("finish_reason") == "stop" for ch in r.json()["choices"])
        with c.stream("POST", path, json=body) as r:
            if r.status_code != 200:
                r.read()
                return str(r.status_code), False
            data = [line[5:].strip() for line in r.iter_lines() if line.startswith("data:")] if how == "stream" \
                else self._hang_up(r)
        if how == "hangup":
            return "hangup", False
        if not data or data[-1] != "[DONE]":
            return "200-no-DONE", False
        events = [json.loads(d) for d in data[:-1]]
        if any("error" in e for e in events):
            return "200+error-event", False
        stopped = any(ch.get("finish_reason") == "stop" for e in events for ch in e.get("choices") or [])
        return "200", stopped

    def _hang_up(self, r: httpx.Response) -> list:
        """Read two events, then close the connection mid-stream (leaving the block closes it)."""
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data:")
            if seen == 2:
                break
        return []

    def run(self, indices, pace: float = 0.0, stop=lambda: False) -> list[dict]:
        """Run the requests `indices` over `concurrency` threads; `pace`: seconds between submissions; `stop()`
        true: submit no more (a bound was broken: fail fast instead of waiting out a leak's timeouts)."""
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = []
            for i in indices:
                while len(futures) - sum(f.done() for f in futures) >= 2 * self.concurrency and not stop():
                    time.sleep(0.01)  # submit just ahead of the workers, so that stop() takes effect
                if stop():
                    break
                futures.append(pool.submit(self.one, i))
                if pace:
                    time.sleep(pace)
            return [f.result() for f in futures]


def by_label(results: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(r["label"] for r in results).items()))


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20
