"""A client that goes away aborts its sequence in the engine: the engine stops computing it.

A draft hook slows each decode step to ~10 ms so that a 480-token request takes seconds and
the disconnect surely comes first.
"""

import time

import httpx
import pytest
from gateway_helpers import LiveServer, settings, wait_until

LONG = {"prompt": [65, 66, 67], "max_tokens": 480, "ignore_eos": True}


def slow_steps(reqs, drafts):
    time.sleep(0.01)
    return drafts


@pytest.fixture
def slow(tiny_ckpt):
    with LiveServer(settings(tiny_ckpt)) as server:
        server.engine.draft_hook = slow_steps
        yield server


def assert_engine_stopped(server, aborted_before: int) -> None:
    assert wait_until(lambda: server.worker.num_aborted == aborted_before + 1, timeout=10)
    assert wait_until(lambda: not server.engine.has_unfinished(), timeout=10)
    assert server.engine.num_running == 0 and server.engine.free_slots  # its slot is back
    steps = server.worker.num_steps
    time.sleep(0.3)
    assert server.worker.num_steps == steps  # nothing is being decoded any more
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert "orthrus_requests_aborted_total 1.0" in metrics
    assert 'orthrus_requests_total{route="completions",status="499"} 1.0' in metrics  # the client left first


def test_stream_disconnect_aborts_in_engine(slow):
    before = slow.worker.num_aborted
    with httpx.stream("POST", slow.url + "/v1/completions", json={**LONG, "stream": True}, timeout=30) as r:
        lines = r.iter_lines()
        got = [line for line, _ in zip(lines, range(6)) if line.startswith("data:")]
        assert len(got) >= 3 and slow.engine.num_running == 1
    # Leaving the block closed the connection mid-stream.
    assert_engine_stopped(slow, before)
    assert slow.state.admission.active == 0


def test_openai_stream_closed_early_aborts(slow):
    import openai

    before = slow.worker.num_aborted
    client = openai.OpenAI(base_url=slow.url + "/v1", api_key="x", max_retries=0)
    stream = client.completions.create(model=slow.state.settings.model_id, stream=True, prompt=LONG["prompt"],
                                       max_tokens=LONG["max_tokens"], extra_body={"ignore_eos": True})
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    assert_engine_stopped(slow, before)


def test_non_stream_disconnect_aborts_in_engine(slow):
    before = slow.worker.num_aborted
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(slow.url + "/v1/completions", json=LONG, timeout=0.5)
    assert_engine_stopped(slow, before)


def test_server_serves_normally_after_disconnects(slow):
    slow.engine.draft_hook = None
    r = httpx.post(slow.url + "/v1/completions", json={**LONG, "max_tokens": 8}, timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 8
