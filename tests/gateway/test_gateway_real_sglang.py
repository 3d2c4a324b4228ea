"""The SGLang backend against a REAL SGLang 0.5.17 server (CPU engine, torch_native attention).

The model is a tiny random plain Qwen3 (SGLang serves it with no speculative algorithm, since
the ORTHRUS plugin is another issue's work), so this checks the wire protocol end to end: ids
in, cumulative streamed ids out, meta_info, /health, /get_model_info, /get_server_info, error
bodies, and a real SGLang crash and restart. Skipped when `import sglang` fails.
"""

import os
import signal
import subprocess
import sys

import httpx
import pytest
from gateway_helpers import REPO, LiveServer, free_port, settings, sse_events, wait_http

from orthrus_sglang.testing import write_tiny_plain_qwen3

sglang = pytest.importorskip("sglang", reason="real SGLang is not installed")

PROMPT = [72, 101, 108, 108, 111]


def write_tiny_qwen3(path):
    write_tiny_plain_qwen3(path)
    return path


class RealSGLang:
    """`python -m sglang.launch_server` in its own process group (SGLang forks a scheduler and a detokenizer)."""

    def __init__(self, model, port: int):
        self.model, self.port, self.proc = model, port, None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> "RealSGLang":
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORTHRUS_")}
        env["SGLANG_USE_CPU_ENGINE"] = "1"  # SGLang's is_cpu() reads it at import
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sglang.launch_server", "--model-path", str(self.model), "--port", str(self.port),
             "--device", "cpu", "--attention-backend", "torch_native", "--disable-cuda-graph", "--dtype", "float32",
             "--mem-fraction-static", "0.05", "--max-total-tokens", "4096", "--context-length", "512",
             "--random-seed", "0", "--log-level", "error"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_http(self.url + "/health", timeout=180)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # our own group: the server and its children
            self.proc.wait(30)
        self.proc = None


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    server = RealSGLang(write_tiny_qwen3(tmp_path_factory.mktemp("real-sglang-qwen3")), free_port()).start()
    try:
        with LiveServer(settings(None, backend="sglang", backend_url=server.url, served_model_name="q3")) as gw:
            yield server, gw
    finally:
        server.kill()


def test_gateway_returns_what_sglang_generates(real):
    server, gw = real
    direct = httpx.post(server.url + "/generate", timeout=60, json={
        "input_ids": PROMPT, "sampling_params": {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}}).json()
    r = httpx.post(gw.url + "/v1/completions", timeout=60, json={
        "prompt": PROMPT, "max_tokens": 12, "ignore_eos": True, "return_token_ids": True}).json()
    assert r["choices"][0]["token_ids"] == direct["output_ids"]
    assert r["choices"][0]["finish_reason"] == "length"
    assert r["orthrus"] is None  # plain AR server: no speculative fields in meta_info, and we say so
    assert httpx.get(gw.url + "/get_server_info", timeout=10).json()["context_length"] == 512


def test_stream_equals_non_stream_through_real_sglang(real):
    _, gw = real
    body = {"prompt": PROMPT, "max_tokens": 16, "ignore_eos": True, "return_token_ids": True}
    full = httpx.post(gw.url + "/v1/completions", json=body, timeout=60).json()["choices"][0]
    with httpx.stream("POST", gw.url + "/v1/completions", json={**body, "stream": True}, timeout=60) as s:
        events = sse_events(s.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = [e["choices"][0] for e in events[:-1]]
    assert [t for c in chunks for t in c["token_ids"]] == full["token_ids"]
    assert "".join(c["text"] for c in chunks) == full["text"]


def test_context_limit_comes_from_sglang(real):
    _, gw = real
    r = httpx.post(gw.url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 600}, timeout=60)
    assert r.status_code == 400 and "maximum context length is 512" in r.json()["error"]["message"]


def test_real_sglang_crash_then_restart(real):
    server, gw = real
    server.kill()
    r = httpx.post(gw.url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 2}, timeout=60)
    assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
    assert httpx.get(gw.url + "/health", timeout=30).status_code == 503
    server.start()  # same port; the gateway is not restarted
    assert httpx.get(gw.url + "/health", timeout=30).status_code == 200
    r = httpx.post(gw.url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 2}, timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
