"""Data parallel through SGLang's router: two ORTHRUS replicas, `sglang-router` in front, our gateway in front of it.

All real processes on the CPU engine, talking real HTTP, started as docs/scaling-out.md says:

    python -m sglang.launch_server --model-path CK --speculative-algorithm ORTHRUS ... --port A   (and --port B)
    python -m sglang_router.launch_router --worker-urls http://A http://B --policy round_robin ...
    python -m orthrus_server --backend sglang --backend-url http://ROUTER

Checked: requests spread over both replicas (counted from each replica's own /metrics), greedy outputs and
per-request orthrus stats equal the reference engine's, the replicas' orthrus:* series and the gateway's
/metrics add up; a replica SIGKILLed mid-load fails only the requests it was running (the others finish,
new ones go to the survivor); restarted on the same port it rejoins by itself and serves again.

What the router (sglang-router 0.3.2) does when a worker dies, as seen here: it keeps the worker in its
list (GET /workers) with is_healthy=false after --health-failure-threshold failed probes of /health, and
keeps probing it every --health-check-interval-secs; a request routed to it before that fails to connect
and is retried on another worker (--retry-max-retries); a request whose response was already streaming
is not retried (the client sees the error). Once the restarted worker answers /health
--health-success-threshold times it is healthy again and gets traffic: no re-adding through the API.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sgl_engine import require_sglang
from sgl_server import ServerProcess, free_port, launch_gateway, launch_sglang_server
from test_orthrus_server_cpu import metric, scrape

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine as ReferenceEngine
from orthrus_sglang.testing import write_tiny_checkpoint

BLOCK = 4
TIMEOUT = 180  # seconds per HTTP request: a 2-core CI machine is busy with five processes here
REPLICA_ARGS = ["--speculative-algorithm", "ORTHRUS", "--speculative-num-draft-tokens", str(BLOCK), "--enable-metrics"]
# Probe every second, and one failed (or passed) probe flips a worker's health: the test stays short.
ROUTER_ARGS = ["--policy", "round_robin", "--health-check-interval-secs", "1", "--health-failure-threshold", "1",
               "--health-success-threshold", "1", "--log-level", "warn"]


def prompt_ids(i: int) -> list[int]:
    """Distinct byte-level prompts (the tiny checkpoint's tokenizer maps bytes to ids 0..255)."""
    return list(f"Request {i}: count to ten.".encode())


# ---- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("router-qwen3"), backbone="qwen3", diff_from_ar=True,
                                 block_size=BLOCK)


@pytest.fixture(scope="module")
def reference(checkpoint):
    engine = ReferenceEngine(checkpoint, block_size=BLOCK, max_batch_size=4)

    def greedy(ids: list[int], max_new_tokens: int, ignore_eos: bool = False):
        return engine.generate([list(ids)], SamplingParams(max_new_tokens=max_new_tokens, ignore_eos=ignore_eos))[0]

    return greedy


class Cluster:
    def __init__(self, checkpoint, logs):
        self.checkpoint, self.logs = checkpoint, logs
        self.ports = [free_port(), free_port()]
        self.replicas: list[ServerProcess | None] = [None, None]
        self.router: ServerProcess | None = None
        self.gateway: ServerProcess | None = None

    def start_replica(self, i: int, log_name: str | None = None) -> ServerProcess:
        self.replicas[i] = launch_sglang_server(self.checkpoint, self.ports[i], self.logs / (log_name or f"replica{i}.log"),
                                                extra_args=REPLICA_ARGS, timeout=300)
        return self.replicas[i]

    def start(self) -> Cluster:
        urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        port = free_port()
        router = ServerProcess("router", ["-m", "sglang_router.launch_router", "--host", "127.0.0.1", "--port", str(port),
                                          "--worker-urls", *urls, "--prometheus-host", "127.0.0.1",
                                          "--prometheus-port", str(free_port()), *ROUTER_ARGS],
                               port, self.logs / "router.log")
        self.router = router
        # The replicas and the router start side by side (the router waits for its workers in the background).
        errors = []

        def run(fn, *args):
            try:
                fn(*args)
            except Exception as e:  # re-raised below, after every thread is done
                errors.append(e)

        threads = [threading.Thread(target=run, args=(self.start_replica, i)) for i in range(2)]
        threads.append(threading.Thread(target=run, args=(router.start, 120)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self.wait_workers_healthy([True, True])
        self.gateway = launch_gateway(self.checkpoint, router.url, free_port(), self.logs / "gateway.log", timeout=120)
        return self

    def workers(self) -> dict[str, bool]:
        body = httpx.get(self.router.url + "/workers", timeout=30).json()
        return {w["url"].rstrip("/"): w["is_healthy"] for w in body["workers"]}

    def wait_workers_healthy(self, want: list[bool], timeout: float = 120) -> None:
        urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        deadline = time.monotonic() + timeout
        while (seen := self.workers()) != dict(zip(urls, want)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"router workers {seen}, waited for {dict(zip(urls, want))}")
            time.sleep(0.2)

    def kill_replica(self, i: int) -> None:
        proc = self.replicas[i].proc
        os.killpg(proc.pid, signal.SIGKILL)  # the replica's own process group: server, scheduler, detokenizer
        proc.wait(30)
        self.replicas[i].proc = None

    def ensure_running(self, i: int) -> None:
        """Replica i up and healthy in the router (a test before may have killed it and failed before restarting)."""
        if self.replicas[i] is None or self.replicas[i].proc is None:
            self.start_replica(i, f"replica{i}-started-again.log")
        self.wait_workers_healthy([True, True])

    def stop(self) -> None:
        for p in [self.gateway, self.router, *self.replicas]:
            if p is not None:
                p.stop()


@pytest.fixture(scope="module")
def cluster(checkpoint, tmp_path_factory):
    require_sglang()
    pytest.importorskip("sglang_router", reason="sglang-router is not installed (scripts/install_test_deps.sh)")
    c = Cluster(checkpoint, tmp_path_factory.mktemp("router-logs"))
    try:
        yield c.start()
    finally:
        c.stop()
        print(f"\n[router test] logs: {c.logs}")


def complete(gw_url: str, ids: list[int], max_tokens: int, **extra) -> dict:
    r = httpx.post(gw_url + "/v1/completions", timeout=TIMEOUT, json={
        "prompt": ids, "max_tokens": max_tokens, "temperature": 0, "return_token_ids": True, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def assert_equals_reference(body: dict, expected) -> None:
    choice = body["choices"][0]
    assert choice["token_ids"] == expected.token_ids
    stats = body["orthrus"]
    assert stats["block_size"] == BLOCK
    assert stats["steps"] == expected.stats.num_steps
    assert stats["tokens"] == expected.stats.num_tokens
    assert stats["accept_length_histogram"] == expected.stats.accept_length_histogram
    assert stats["accepted_per_position"] == expected.stats.accepted_per_position


def metric_or_zero(samples: dict, name: str, **labels) -> float:
    try:
        return metric(samples, name, **labels)
    except KeyError:  # a labelled series appears with its first sample
        return 0.0


def requests_served(url: str) -> float:
    return metric(scrape(url), "sglang:num_requests_total")


def wait_requests_served(url: str, want: float, timeout: float = 15) -> float:
    """The replica's request counter once it reaches `want` (its processes write it just after answering)."""
    deadline = time.monotonic() + timeout
    while (seen := requests_served(url)) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


# ---- tests -----------------------------------------------------------------------------------
def test_requests_spread_over_both_replicas(cluster, reference):
    """8 concurrent greedy requests through gateway -> router: both replicas serve, outputs == reference."""
    n, max_tokens = 8, 16
    replicas = [r.url for r in cluster.replicas]
    before = [scrape(u) for u in replicas]
    gw_before = scrape(cluster.gateway.url)
    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(lambda i: complete(cluster.gateway.url, prompt_ids(i), max_tokens), range(n)))
    expected = [reference(prompt_ids(i), max_tokens) for i in range(n)]
    for body, exp in zip(bodies, expected):
        assert_equals_reference(body, exp)
    steps = sum(e.stats.num_steps for e in expected)
    hist = [sum(e.stats.accept_length_histogram[k] for e in expected) for k in range(BLOCK)]
    assert hist[0] > 0 and sum(hist[1:]) > 0, "the test needs accepted and rejected drafts"

    # Each replica's own counters (SGLang's and ours): deltas add up to the whole load, both replicas took part.
    def deltas(name, **labels):
        after = [scrape(u) for u in replicas]
        return [metric(a, name, **labels) - metric(b, name, **labels) for a, b in zip(after, before)]

    names = ["sglang:num_requests_total", "orthrus:verify_steps_total", "orthrus:accept_drafts_sum",
             "orthrus:full_block_accept_total"]
    want = {"sglang:num_requests_total": n, "orthrus:verify_steps_total": steps,
            "orthrus:accept_drafts_sum": sum(k * c for k, c in enumerate(hist)),
            "orthrus:full_block_accept_total": hist[BLOCK - 1]}
    deadline = time.monotonic() + 15  # written by the replicas' scheduler / tokenizer processes
    while {k: sum(deltas(k)) for k in names} != want and time.monotonic() < deadline:
        time.sleep(0.2)
    per_replica = {k: deltas(k) for k in names}
    assert {k: sum(v) for k, v in per_replica.items()} == want
    counts = per_replica["sglang:num_requests_total"]
    print(f"\n[router] requests per replica {counts}; verify steps per replica "
          f"{per_replica['orthrus:verify_steps_total']}")
    assert all(c > 0 for c in counts), f"round_robin sent every request to one replica: {counts}"

    # The gateway's own /metrics: the requests, their tokens, and the orthrus stats it read from SGLang's meta_info.
    gw_after = scrape(cluster.gateway.url)

    def gw_delta(name, **labels):
        return metric(gw_after, name, **labels) - metric_or_zero(gw_before, name, **labels)

    assert gw_delta("orthrus_requests_total", route="completions", status="200") == n
    assert gw_delta("orthrus_generation_tokens_total") == n * max_tokens
    assert gw_delta("orthrus_decode_steps_total") == steps
    for pos in range(1, BLOCK):
        assert gw_delta("orthrus_accepted_drafts_total", position=str(pos)) == sum(hist[pos:])


def test_gateway_reads_the_replicas_server_info_through_the_router(cluster):
    """The router's own /get_server_info describes the router; the gateway asks a worker for the context length
    and the block size instead (the context limit is then SGLang's --context-length 512)."""
    assert "context_length" not in httpx.get(cluster.router.url + "/get_server_info", timeout=30).json()
    r = httpx.post(cluster.gateway.url + "/v1/completions", timeout=TIMEOUT,
                   json={"prompt": prompt_ids(0), "max_tokens": 600})
    assert r.status_code == 400 and "maximum context length is 512" in r.json()["error"]["message"]


def stream_completion(gw_url: str, ids: list[int], max_tokens: int, started: threading.Event) -> dict:
    """A streamed /v1/completions: the token ids received, and the error event if the stream carried one."""
    out = {"token_ids": [], "error": None, "orthrus": None, "done": False}
    body = {"prompt": ids, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
            "return_token_ids": True}
    try:
        with httpx.stream("POST", gw_url + "/v1/completions", json=body, timeout=TIMEOUT) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    out["done"] = True
                    break
                event = json.loads(data)
                if "error" in event:
                    out["error"] = event["error"]
                    continue
                choice = event["choices"][0]
                out["token_ids"] += choice.get("token_ids") or []
                out["orthrus"] = event.get("orthrus") or out["orthrus"]
                if out["token_ids"]:
                    started.set()
    finally:
        started.set()
    return out


KILL_ATTEMPTS = 3  # kill scenarios tried before "no stream was running on the killed replica" fails the test


def kill_mid_load(cluster, reference, k: int, max_tokens: int):
    """k long streams over both replicas; replica 1 SIGKILLed once every stream has tokens; 4 new requests while
    it is still in the router's list. Checks every answer against the reference; returns what the kill hit:
    (streams cut, streams finished, streams the survivor served, streams replica 1 finished before the kill)."""
    cluster.ensure_running(1)
    survivor, killed = cluster.replicas[0].url, cluster.replicas[1].url
    served_before, killed_served_before = requests_served(survivor), requests_served(killed)
    started = [threading.Event() for _ in range(k)]
    with ThreadPoolExecutor(k) as pool:
        futures = [pool.submit(stream_completion, cluster.gateway.url, prompt_ids(100 + i), max_tokens, started[i])
                   for i in range(k)]
        for e in started:
            assert e.wait(TIMEOUT)
        # A stream on replica 1 may already be done (the others were slow to start on a busy machine): its counter
        # now is a lower bound on them (it is written just after the answer).
        done_on_killed = requests_served(killed) - killed_served_before
        cluster.kill_replica(1)
        # New requests while the dead replica is still in the router's list: all served (by the survivor).
        after_kill = [complete(cluster.gateway.url, prompt_ids(200 + j), 8) for j in range(4)]
        assert httpx.get(cluster.gateway.url + "/health", timeout=30).status_code == 200
        results = [f.result() for f in futures]

    for j, body in enumerate(after_kill):
        assert_equals_reference(body, reference(prompt_ids(200 + j), 8))
    failed = [r for r in results if r["error"] is not None]
    finished = [r for r in results if r["error"] is None]
    for i, r in enumerate(results):
        expected = reference(prompt_ids(100 + i), max_tokens, ignore_eos=True).token_ids
        assert r["done"]  # every stream ends properly, with [DONE]
        if r["error"] is None:
            assert r["token_ids"] == expected
        else:  # cut short: what it got before the kill is still the right prefix
            assert r["error"]["code"] == "backend_error" and "Lost the connection to SGLang" in r["error"]["message"]
            assert 0 < len(r["token_ids"]) < max_tokens and r["token_ids"] == expected[:len(r["token_ids"])]
    # Only the killed replica's in-flight requests failed: everything the survivor took, it finished.
    on_survivor = wait_requests_served(
        survivor, served_before + len(finished) - done_on_killed + len(after_kill)) - served_before
    streams_on_survivor = on_survivor - len(after_kill)
    print(f"\n[router] kill mid-load: {len(failed)} of {k} streams cut (on the killed replica), {len(finished)} "
          f"finished ({streams_on_survivor:.0f} on the survivor, {done_on_killed:.0f}+ done on replica 1 before the "
          f"kill); survivor served {on_survivor:.0f} requests (its streams + {len(after_kill)} new)")
    return failed, finished, streams_on_survivor, done_on_killed


def test_replica_killed_mid_load_then_restarted_rejoins(cluster, reference):
    # 1-2. The kill must hit a stream in flight. On a busy machine replica 1 can finish its streams before the
    # survivor's have started (the kill waits for every stream's first token): then the scenario is run again.
    for attempt in range(1, KILL_ATTEMPTS + 1):
        failed, finished, streams_on_survivor, done_on_killed = kill_mid_load(cluster, reference, k=6, max_tokens=160)
        if failed or attempt == KILL_ATTEMPTS:
            break
        print(f"[router] attempt {attempt}: every stream on replica 1 ended before the kill; again")
    assert len(failed) >= 1, "no stream was running on the killed replica"
    assert streams_on_survivor <= len(finished), "a stream the survivor took did not finish"
    assert len(finished) - streams_on_survivor >= done_on_killed  # the others finished on replica 1 before the kill
    assert cluster.workers()[cluster.replicas[1].url] is False  # the router marked it unhealthy and kept it

    # 3. Restart on the same port: the router's health probe brings it back, with no API call of ours.
    cluster.start_replica(1, "replica1-restarted.log")
    cluster.wait_workers_healthy([True, True])
    before = [requests_served(r.url) for r in cluster.replicas]
    with ThreadPoolExecutor(2) as pool:
        bodies = list(pool.map(lambda i: complete(cluster.gateway.url, prompt_ids(300 + i), 12), range(4)))
    for i, body in enumerate(bodies):
        assert_equals_reference(body, reference(prompt_ids(300 + i), 12))
    deadline = time.monotonic() + 15  # the counters are written just after the answers
    while sum(counts := [requests_served(r.url) - b for r, b in zip(cluster.replicas, before)]) != 4 \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    print(f"[router] after the restart: requests per replica {counts}")
    assert sum(counts) == 4 and all(c > 0 for c in counts)


def test_soak_through_the_router_with_a_replica_killed(cluster, capsys):
    """gateway_soak's mixed load through gateway -> router -> 2 replicas; replica 1 SIGKILLed a third of the way in
    (not restarted: the module ends here). Only requests in flight at the kill fail, no request hangs, and the
    gateway's connections to the router stay bounded (issue 24). ORTHRUS_SOAK_REQUESTS: as in
    test_gateway_soak_cpu.py (300 in CI: 3.5 to 5 minutes on the 2-core CI machine while other jobs loaded it)."""
    from gateway_soak import CONCURRENCY, OK, SOAK_REQUESTS, Driver, SocketWatch, by_label

    cluster.ensure_running(1)
    driver = Driver(cluster.gateway.url, CONCURRENCY)
    driver.prepare()
    results: list[dict] = []
    start = time.monotonic()
    with SocketWatch(cluster.gateway.proc.pid, cluster.router.port, CONCURRENCY + 4) as watch:
        load = threading.Thread(target=lambda: results.extend(
            driver.run(range(SOAK_REQUESTS), stop=lambda: watch.violation is not None)))
        load.start()
        while driver.finished < SOAK_REQUESTS // 3 and load.is_alive():
            time.sleep(0.05)
        t_kill = time.monotonic()
        cluster.kill_replica(1)
        load.join()  # ends: every request is bounded by the client's timeout (a hang shows as a ReadTimeout)
    assert watch.violation is None, f"after {driver.sent} requests (+ prepare's): {watch.violation}; {by_label(results)}"
    failed = [r for r in results if r["label"] not in OK]
    assert all(r["t_start"] < t_kill < r["t_end"] for r in failed), "a request that was not in flight at the kill failed"
    assert len(failed) <= CONCURRENCY and {r["label"] for r in failed} <= {"502", "200+error-event"}, by_label(failed)
    # Nothing hung: a hung request would end in the client's timeout as a ReadTimeout, failing the label check above.
    assert httpx.get(cluster.gateway.url + "/health", timeout=30).status_code == 200
    open_end = watch.open_count()
    assert open_end <= CONCURRENCY + 2
    with capsys.disabled():  # the report belongs in CI's log
        print(f"\n[router soak] {len(results)} requests in {time.monotonic() - start:.0f} s: {by_label(results)}; "
              f"{len(failed)} failed, all in flight at the kill; slowest {max(r['seconds'] for r in results):.1f} s; "
              f"connections to the router max {watch.max_open}, {open_end} open at the end")
