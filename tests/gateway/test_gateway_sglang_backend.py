"""The SGLang backend against sglang_standin.py, a real HTTP server process speaking SGLang's
native protocol (real SGLang is not installed here; its coverage is owed on the GPU host).

Covers: results and Orthrus statistics equal to the embedded engine's, SGLang going down (503,
/health says so) and coming back (the gateway recovers without a restart), a gateway started
while SGLang is down, disconnects and a SGLang crash mid-stream.
"""

import time

import httpx
import openai
import pytest
from gateway_helpers import LiveServer, free_port, python_process, settings, sse_events, stop_process, wait_http
from prometheus_client.parser import text_string_to_metric_families

from orthrus_sglang import SamplingParams

STANDIN = "tests/gateway/sglang_standin.py"
PROMPT = [72, 101, 108, 108, 111, 33]


class StandInProcess:
    def __init__(self, model, port: int):
        self.model, self.port, self.proc = model, port, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "StandInProcess":
        self.proc = python_process([STANDIN, "--model", str(self.model), "--port", str(self.port)])
        wait_http(self.url + "/health")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def stats(self) -> dict:
        return httpx.get(self.url + "/standin/stats", timeout=10).json()


@pytest.fixture(scope="module")
def sglang(tiny_ckpt):
    standin = StandInProcess(tiny_ckpt, free_port()).start()
    with LiveServer(settings(None, backend="sglang", backend_url=standin.url, served_model_name="tiny-sgl")) as gw:
        yield standin, gw
    standin.stop()


def test_same_tokens_and_stats_as_the_embedded_engine(sglang, tiny_ckpt):
    from orthrus_sglang.ref.engine import Engine

    _, gw = sglang
    r = httpx.post(gw.url + "/v1/completions", timeout=60, json={
        "prompt": PROMPT, "max_tokens": 20, "ignore_eos": True, "return_token_ids": True})
    assert r.status_code == 200, r.text
    body = r.json()
    solo = Engine(tiny_ckpt, max_batch_size=1).generate([PROMPT], SamplingParams(max_new_tokens=20, ignore_eos=True))[0]
    assert body["choices"][0]["token_ids"] == solo.token_ids
    o = body["orthrus"]
    assert o["steps"] == solo.stats.num_steps and o["tokens"] == 20 and o["block_size"] == 4
    assert o["accept_length_histogram"] == solo.stats.accept_length_histogram
    assert o["accepted_per_position"] == solo.stats.accepted_per_position
    assert o["tau"] == pytest.approx(solo.stats.tau, abs=1e-4)


def test_openai_stream_through_sglang(sglang):
    _, gw = sglang
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    kwargs = dict(model="tiny-sgl", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
    full = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full.choices[0].message.content
    assert httpx.get(gw.url + "/health", timeout=10).json()["backend"] == "sglang"


def test_native_generate_through_sglang(sglang):
    _, gw = sglang
    r = httpx.post(gw.url + "/generate", timeout=60, json={
        "input_ids": PROMPT, "sampling_params": {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}})
    meta = r.json()["meta_info"]
    assert meta["completion_tokens"] == 6 and meta["spec_verify_ct"] == 5
    assert meta["finish_reason"] == {"type": "length", "length": 6}


def test_disconnect_aborts_in_sglang(sglang):
    standin, gw = sglang
    before = standin.stats()
    body = {"prompt": PROMPT, "max_tokens": 400, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", gw.url + "/v1/completions", json=body, timeout=30) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i == 4:
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and standin.stats()["aborted"] == before["aborted"]:
        time.sleep(0.05)
    after = standin.stats()
    assert after["aborted"] == before["aborted"] + 1  # SGLang saw the disconnect and dropped the request
    assert after["abort_requests"] == before["abort_requests"] + 1  # and the gateway also said so explicitly


def test_sglang_down_gives_503_and_recovers_without_restart(sglang):
    standin, gw = sglang
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    assert httpx.post(gw.url + "/v1/chat/completions", json=chat, timeout=30).status_code == 200
    before = metrics(gw)
    standin.stop()
    try:
        for stream in (False, True):
            r = httpx.post(gw.url + "/v1/chat/completions", json={**chat, "stream": stream}, timeout=30)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["type"] == "service_unavailable"
            assert "unreachable" in r.json()["error"]["message"]
        h = httpx.get(gw.url + "/health", timeout=30)
        assert h.status_code == 503 and "unreachable" in h.json()["detail"]
        # Refused, not aborted: those sequences never ran (issue 24: each one counted as an abort).
        after = metrics(gw)
        assert delta(after, before, "orthrus_requests_total", route="chat", status="503") == 2
        assert delta(after, before, "orthrus_requests_aborted_total") == 0
    finally:
        standin.start()
    assert httpx.get(gw.url + "/health", timeout=30).status_code == 200
    assert httpx.post(gw.url + "/v1/chat/completions", json=chat, timeout=30).status_code == 200


def test_sglang_crash_mid_stream_ends_with_an_error_event(sglang):
    standin, gw = sglang
    body = {"prompt": PROMPT, "max_tokens": 400, "ignore_eos": True, "stream": True}
    before = metrics(gw)
    try:
        with httpx.stream("POST", gw.url + "/v1/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            first = [next(lines) for _ in range(2)]
            standin.proc.kill()
            events = sse_events(first + list(lines))
        assert events[-1] == "[DONE]"
        assert events[-2]["error"]["code"] == "backend_error"
        assert "SGLang" in events[-2]["error"]["message"]
        # Counted by how it ended (its error's status), though its status line said 200; a failure, not an abort.
        after = metrics(gw)
        assert delta(after, before, "orthrus_requests_total", route="completions", status="502") == 1
        assert delta(after, before, "orthrus_requests_total", route="completions", status="200") == 0
        assert delta(after, before, "orthrus_requests_aborted_total") == 0
    finally:
        standin.stop()
        standin.start()


def metrics(gw) -> dict:
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text)
            for s in f.samples}


def delta(after: dict, before: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_gateway_started_while_sglang_is_down(tiny_ckpt):
    standin = StandInProcess(tiny_ckpt, free_port())  # not started yet
    with LiveServer(settings(None, backend="sglang", backend_url=standin.url, health_timeout_s=0.5)) as gw:
        h = httpx.get(gw.url + "/health", timeout=30)
        assert h.status_code == 503 and h.json()["model_loaded"] is False
        r = httpx.post(gw.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}, timeout=30)
        assert r.status_code == 503
        standin.start()
        try:
            assert httpx.get(gw.url + "/health", timeout=30).json()["model_loaded"] is True
            r = httpx.post(gw.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}, timeout=30)
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
        finally:
            standin.stop()
