"""Concurrency and queue limits -> 429 with Retry-After; a queued client that leaves frees its place.

A gate in the engine's draft hook holds the first request inside a decode step, so that the
slots are provably full while the other requests arrive (no timing guesses).
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from gateway_helpers import LiveServer, settings, wait_until

BODY = {"prompt": "hold", "max_tokens": 4, "ignore_eos": True}


class Gate:
    def __init__(self):
        self.opened = threading.Event()
        self.entered = threading.Event()

    def __call__(self, reqs, drafts):
        self.entered.set()
        self.opened.wait(30)
        return drafts


@pytest.fixture
def limited(tiny_ckpt):
    with LiveServer(settings(tiny_ckpt, max_concurrent_requests=1, max_queue=1, retry_after_s=3)) as server:
        gate = Gate()
        server.engine.draft_hook = gate
        try:
            yield server, gate
        finally:
            gate.opened.set()


def test_full_slots_and_queue_give_429_then_all_admitted_finish(limited):
    server, gate = limited
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, server.url + "/v1/completions", json=BODY, timeout=60)
        assert gate.entered.wait(30)  # request 1 holds the only slot, inside a decode step
        second = pool.submit(httpx.post, server.url + "/v1/completions", json=BODY, timeout=60)
        assert wait_until(lambda: len(server.state.admission.waiting) == 1)  # request 2 is queued
        for stream in (False, True):
            r = httpx.post(server.url + "/v1/completions", json={**BODY, "stream": stream}, timeout=30)
            assert r.status_code == 429
            assert r.headers["retry-after"] == "3"
            assert r.json()["error"]["code"] == "rate_limit_exceeded"
        gate.opened.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    assert 'orthrus_requests_total{route="completions",status="429"} 2.0' in metrics
    assert server.state.admission.active == 0


def test_queued_client_that_disconnects_leaves_the_queue(limited):
    server, gate = limited
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, server.url + "/v1/completions", json=BODY, timeout=60)
        assert gate.entered.wait(30)
        with pytest.raises(httpx.ReadTimeout):  # the client gives up while queued
            httpx.post(server.url + "/v1/completions", json=BODY, timeout=0.5)
        assert wait_until(lambda: not server.state.admission.waiting)
        # Its place is free again: a new request queues instead of getting 429.
        third = pool.submit(httpx.post, server.url + "/v1/completions", json=BODY, timeout=60)
        assert wait_until(lambda: len(server.state.admission.waiting) == 1)
        gate.opened.set()
        assert first.result().status_code == 200
        assert third.result().status_code == 200
    assert wait_until(lambda: server.state.admission.active == 0)


def test_openai_client_sees_rate_limit_error(limited):
    import openai

    server, gate = limited
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, server.url + "/v1/completions", json=BODY, timeout=60)
        assert gate.entered.wait(30)
        second = pool.submit(httpx.post, server.url + "/v1/completions", json=BODY, timeout=60)
        assert wait_until(lambda: len(server.state.admission.waiting) == 1)
        with pytest.raises(openai.RateLimitError) as e:
            client.completions.create(model=server.state.settings.model_id, prompt="x", max_tokens=2)
        assert e.value.response.headers["retry-after"] == "3"
        gate.opened.set()
        first.result(), second.result()
