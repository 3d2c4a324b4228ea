"""The gateway (`python -m orthrus_server --backend sglang`) in front of a real SGLang server, under a long mixed load.

Issue 24: every request left one connection from the gateway to SGLang open (CLOSE-WAIT) until the
HTTP pool (100) was full and the gateway stopped answering. The sockets of the gateway process to
SGLang's port are counted throughout (gateway_soak.SocketWatch), not only the responses.

- test_connections_to_sglang_are_reused_never_leaked: 300 mixed requests (plain and streamed, n=2,
  stop strings that end a sequence early, hang-ups mid-stream and mid-request): open connections
  never exceed the concurrency (at most 8 sequences in flight) + 4 (idle keep-alive connections stay
  in the pool, so the bound is the most ever in flight, not those in flight now), and 20 sequential
  requests open no new connection (keep-alive). On 402197d it fails at once: after prepare's 16
  sequential requests and 2 of the soak, 16 connections were open (13 in CLOSE-WAIT).
- test_soak_sglang_killed_and_restarted: ORTHRUS_SOAK_REQUESTS (300 in CI; scripts/soak_gateway.sh:
  1000) mixed requests, then SGLang SIGKILLed under load and restarted on its port (the gateway is
  not), then 200 more; the report (printed even under capture, and one `SOAK SUMMARY` line) gives
  requests by status, connections, gateway RSS, the time to the first success after the restart and
  /health latency.

Both share one SGLang (tiny ORTHRUS checkpoint, block 4, CPU engine) and one gateway process.
Measured on the 2-core CI machine: 89 s for the module when it had the machine (start-up 26 s, the
first test 12 s, the second 46 s), about 7 minutes while other jobs loaded it (load average 3-17).
The gateway's /health passes SGLang's /health through, which answers in about 1 s (a 1-token generation).
Run alone: `python -m pytest tests/sgl/test_gateway_soak_cpu.py -s` (or scripts/soak_gateway.sh).
"""

from __future__ import annotations

import itertools
from collections import Counter
import os
import signal
import threading
import time

import httpx
import pytest
from gateway_soak import CONCURRENCY, OK, SOAK_REQUESTS, Driver, HealthProbe, SocketWatch, by_label, rss_mb
from sgl_engine import require_sglang
from sgl_server import free_port, launch_gateway, launch_sglang_server
from test_orthrus_server_cpu import metric, scrape

from orthrus_sglang.testing import write_tiny_checkpoint

BOUND = CONCURRENCY + 4  # + a /health probe, and aborts still going out while the next requests start
AFTER_RESTART = 200
REPLICA_ARGS = ["--speculative-algorithm", "ORTHRUS", "--speculative-num-draft-tokens", "4"]


class Stack:
    def __init__(self, tmp):
        self.checkpoint = write_tiny_checkpoint(tmp / "ckpt", backbone="qwen3", diff_from_ar=True, block_size=4)
        self.logs = tmp
        self.port = free_port()
        self.sglang = self.gateway = None
        self.next_index = 0  # request indices continue across the tests: every kind, every prompt

    def start_sglang(self, log_name: str = "sglang.log"):
        self.sglang = launch_sglang_server(self.checkpoint, self.port, self.logs / log_name, extra_args=REPLICA_ARGS,
                                           timeout=300)

    def kill_sglang(self) -> None:
        os.killpg(self.sglang.proc.pid, signal.SIGKILL)  # its own process group: server, scheduler, detokenizer
        self.sglang.proc.wait(30)
        self.sglang.proc = None

    def indices(self, n: int) -> range:
        self.next_index += n
        return range(self.next_index - n, self.next_index)

    def watch(self) -> SocketWatch:
        return SocketWatch(self.gateway.proc.pid, self.port, BOUND)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_sglang()
    s = Stack(tmp_path_factory.mktemp("gateway-soak"))
    try:
        s.start_sglang()
        s.gateway = launch_gateway(s.checkpoint, s.sglang.url, free_port(), s.logs / "gateway.log")
        s.driver = Driver(s.gateway.url, CONCURRENCY)
        s.driver.prepare()
        yield s
    finally:
        for p in (s.gateway, s.sglang):
            if p is not None:
                p.stop()
        print(f"\n[soak] logs: {s.logs}")


def test_connections_to_sglang_are_reused_never_leaked(stack, capsys):
    start = time.monotonic()
    with stack.watch() as watch:
        results = stack.driver.run(stack.indices(300), stop=lambda: watch.violation is not None)
    assert watch.violation is None, f"after {stack.driver.sent} requests (+ prepare's): {watch.violation}; {by_label(results)}"
    assert set(by_label(results)) <= OK, by_label(results)
    stopped = sum(r["stopped"] for r in results)
    assert stopped > 0, "no stop string ended a sequence early"
    # Keep-alive: one request at a time reuses the pool's idle connections (at most one new one, should SGLang
    # have closed the idle ones); 402197d opened a new connection per request (and leaked it).
    idle = {c.laddr.port for c in watch.connections()}
    seen = set()
    for i in stack.indices(20):
        one = stack.driver.one(i - i % 10 + (i % 4))  # kinds 0-3: completions / chat, plain / streamed
        assert one["label"] == "200"
        seen |= {c.laddr.port for c in watch.connections()}
    assert len(seen - idle) <= 1, f"20 sequential requests opened {len(seen - idle)} new connections to SGLang"
    h = httpx.get(stack.gateway.url + "/health", timeout=30)
    assert h.status_code == 200, h.text
    open_end = watch.open_count()
    assert open_end <= CONCURRENCY + 2
    with capsys.disabled():  # the report belongs in CI's log, which captures passing tests' output
        print(f"\n[soak] 300 requests in {time.monotonic() - start:.1f} s: {by_label(results)}, {stopped} ended early by a "
              f"stop string; connections max {watch.max_open}, {len(watch.ports)} distinct seen, {open_end} open at the "
              f"end; 20 sequential requests: {len(seen - idle)} new connections")


def test_soak_sglang_killed_and_restarted(stack, capsys):
    gw = stack.gateway
    started = time.monotonic()
    rss_before = rss_mb(gw.proc.pid)
    metrics_before = scrape(gw.url)
    with stack.watch() as watch, HealthProbe(gw.url) as health:
        # 1. the long run
        soak = stack.driver.run(stack.indices(SOAK_REQUESTS), stop=lambda: watch.violation is not None)
        assert watch.violation is None, f"after {stack.driver.sent} requests (+ prepare's): {watch.violation}; {by_label(soak)}"
        assert set(by_label(soak)) <= OK, by_label(soak)
        soak_s = time.monotonic() - started
        # 2. SGLang killed under load, restarted on its port; the load goes on throughout
        outage, times = outage_under_load(stack)
        # 3. and after
        after = stack.driver.run(stack.indices(AFTER_RESTART), stop=lambda: watch.violation is not None)
    assert watch.violation is None, watch.violation
    assert set(by_label(after)) <= OK, by_label(after)
    h = httpx.get(gw.url + "/health", timeout=30)
    assert h.status_code == 200, h.text
    # Hang-ups' and the outage's connections close asynchronously: the count settles within seconds, a leak does not.
    deadline = time.monotonic() + 10
    while (open_end := watch.open_count()) > CONCURRENCY + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    rss_after = rss_mb(gw.proc.pid)
    assert open_end <= CONCURRENCY + 2, Counter(c.status for c in watch.connections())

    # Nothing hung (a hang would end in the client's timeout, labelled ReadTimeout), and each kind of failure is
    # the documented one (in flight: an error event or 502; new while SGLang is down: 503).
    assert set(by_label(outage)) <= OK | {"502", "503", "200+error-event"}, by_label(outage)
    refused = [r for r in outage if r["label"] == "503"]
    assert refused, "no request came while SGLang was down"
    # Metrics that mean what they say: every request counted once, by outcome; the refusals are 503s, and
    # only the hang-ups' sequences count as aborted (in 402197d every refusal did too).
    everything = soak + outage + after
    hangups = sum(r["label"] == "hangup" for r in everything)
    deadline = time.monotonic() + 10  # a hang-up is counted once the gateway has seen the client go
    while (m := scrape(gw.url)) and counted(m, metrics_before) < len(everything) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counted(m, metrics_before) == len(everything)
    assert counted(m, metrics_before, status="503") == len(refused)
    gone, aborted = counted(m, metrics_before, status="499"), counted(m, metrics_before, "orthrus_requests_aborted_total")
    assert 0 < aborted <= gone <= hangups, (aborted, gone, hangups)

    report = {
        "requests": len(everything), "by status": by_label(everything),
        "soak": by_label(soak), "outage": by_label(outage), "after restart": by_label(after),
        "connections": f"max {watch.max_open}, open at the end {open_end}, {len(watch.ports)} distinct local ports",
        "gateway RSS MB": f"{rss_before:.0f} -> {rss_after:.0f}",
        "first success after the restart": f"{times['first_ok_after_restart']:.1f} s after SGLang was started again "
                                           f"(its own start-up: {times['sglang_startup_s']:.1f} s; "
                                           f"{times['first_ok_after_up']:+.2f} s from its first /health 200 seen by "
                                           f"the test; {times['first_ok_after_kill']:.1f} s after the kill)",
        "slowest request": f"outage {max(r['seconds'] for r in outage):.1f} s, a 503 "
                           f"{max(r['seconds'] for r in refused):.2f} s, overall {max(r['seconds'] for r in everything):.1f} s",
        "/health": health.summary(),
        "gateway /metrics": status_counts(m),
        "durations": f"soak {soak_s:.0f} s, outage {times['outage_s']:.0f} s, total {time.monotonic() - started:.0f} s",
    }
    with capsys.disabled():  # in CI's log too
        print("\n[soak] report")
        for k, v in report.items():
            print(f"  {k}: {v}")
        print(f"SOAK SUMMARY requests={len(everything)} by_status={by_label(everything)} open_end={open_end} "
              f"max_open={watch.max_open} rss_mb={rss_before:.0f}->{rss_after:.0f} "
              f"first_ok_after_restart_s={times['first_ok_after_restart']:.1f} (sglang_startup_s={times['sglang_startup_s']:.1f}) "
              f"health=({health.summary()})")
    assert rss_after < rss_before + 150, "the gateway's memory grew"


def counted(now: dict, before: dict, name: str = "orthrus_requests_total", **labels) -> float:
    def value(samples):
        try:
            return metric(samples, name, **labels)
        except KeyError:  # a labelled series appears with its first sample
            return 0.0

    return value(now) - value(before)


def status_counts(samples: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for (name, labels), v in samples.items():
        if name == "orthrus_requests_total":
            status = dict(labels)["status"]
            out[status] = out.get(status, 0) + v
    out = dict(sorted(out.items()))
    out["aborted sequences"] = samples.get(("orthrus_requests_aborted_total", ()), 0)
    return out


def outage_under_load(stack) -> tuple[list[dict], dict]:
    """Requests keep coming (every 100 ms) while SGLang is SIGKILLed and restarted, until a few succeed again."""
    results: list[dict] = []
    done = threading.Event()
    loader = threading.Thread(target=lambda: results.extend(
        stack.driver.run(itertools.count(stack.next_index), pace=0.1, stop=done.is_set)))
    loader.start()
    try:
        time.sleep(2)  # in full flow
        t_kill = time.monotonic()
        stack.kill_sglang()
        time.sleep(2)  # refused meanwhile
        t_restart = time.monotonic()
        stack.start_sglang("sglang-restarted.log")
        t_up = time.monotonic()  # our own poll saw SGLang's /health answer 200
        time.sleep(3)  # and served again
    finally:
        done.set()
        loader.join()  # ends: every request is bounded by the client's timeout (a hang shows as a ReadTimeout)
    stack.next_index += len(results)
    ok_after = [r for r in results if r["label"] == "200" and r["t_start"] >= t_kill]
    assert ok_after, f"nothing succeeded after the restart: {by_label(results)}"
    first = min(r["t_end"] for r in ok_after)
    # Signed: the gateway may serve a request before the poll in start_sglang sees SGLang healthy.
    return results, {"first_ok_after_restart": first - t_restart, "first_ok_after_up": first - t_up,
                     "sglang_startup_s": t_up - t_restart, "first_ok_after_kill": first - t_kill,
                     "outage_s": time.monotonic() - t_kill}
