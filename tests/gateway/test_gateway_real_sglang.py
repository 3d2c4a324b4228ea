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
import sgl_frontend_prompts as client
from gateway_helpers import REPO, LiveServer, free_port, settings, sse_events, wait_http
from logprob_reference import check_generation, expected_select, hf_forward
from test_gateway_bench_serving import run_bench, write_sharegpt
from test_gateway_sglang_frontend import run_client

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


def test_logprobs_pass_through_as_sglang_computes_them(real):
    server, gw = real
    body = {"input_ids": PROMPT, "sampling_params": {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True},
            "return_logprob": True, "logprob_start_len": 1, "top_logprobs_num": 2, "token_ids_logprob": [3, 4],
            "return_text_in_logprobs": True}
    direct = httpx.post(server.url + "/generate", json=body, timeout=60).json()
    via = httpx.post(gw.url + "/generate", json=body, timeout=60).json()
    assert via["output_ids"] == direct["output_ids"]
    for key in ("input_token_logprobs", "output_token_logprobs", "input_top_logprobs", "output_top_logprobs",
                "input_token_ids_logprobs", "output_token_ids_logprobs"):
        assert via["meta_info"][key] == direct["meta_info"][key], key
    with httpx.stream("POST", gw.url + "/generate", json={**body, "stream": True}, timeout=60) as r:
        last = sse_events(r.iter_lines())[-2]
    assert last["meta_info"]["output_token_logprobs"] == direct["meta_info"]["output_token_logprobs"]
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "logprobs": True, "top_logprobs": 2}
    r = httpx.post(gw.url + "/v1/chat/completions", json=chat, timeout=60).json()
    assert len(r["choices"][0]["logprobs"]["content"]) == r["usage"]["completion_tokens"]


def test_frontend_select_and_logprobs_through_the_gateway(real):
    """sgl.select and gen(return_logprob=True) through the gateway equal the same script against SGLang itself."""
    server, gw = real
    via, direct = run_client(gw.url, "logprobs"), run_client(server.url, "logprobs")
    # The gateway sends the choices as separate requests where the frontend batches them: batch
    # composition moves SGLang's fp32 numbers in the last bits, so those compare within 1e-5.
    assert _exact(via) == _exact(direct) and _floats(via) == pytest.approx(_floats(direct), abs=1e-5)
    from transformers import AutoTokenizer

    forward, tok = hf_forward(server.model), AutoTokenizer.from_pretrained(str(server.model))
    choice, means = expected_select(forward, tok, client.SELECT_PROMPT, client.CHOICES)
    assert via["selected"] == choice and via["normalized_prompt_logprobs"] == pytest.approx(means, abs=1e-3)
    check_generation(forward, tok, client.LOGPROB_PROMPT, via, start=client.LOGPROB_START, top=client.TOP_LOGPROBS,
                     tol=1e-3)


def _exact(value):
    """Everything but the floats."""
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return None if isinstance(value, float) else value


def _floats(value) -> list[float]:
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _floats(value[k])]
    if isinstance(value, list):
        return [x for v in value for x in _floats(v)]
    return [value] if isinstance(value, float) else []


def test_bench_serving_native_backend_through_the_gateway(real, tmp_path):
    server, gw = real
    result = run_bench(gw.url, "sglang", server.model, write_sharegpt(tmp_path / "sharegpt.json"),
                       tmp_path / "result.jsonl")
    assert result["backend"] == "sglang"


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
