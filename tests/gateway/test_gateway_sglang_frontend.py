"""The real SGLang frontend (`sgl.function` with `sgl.RuntimeEndpoint(gateway_url)`) against the gateway.

Skipped unless `import sglang` works in a child process. The child's extra import path comes
from GATEWAY_SGLANG_PYTHONPATH (e.g. a `pip install --no-deps --target DIR sglang==0.5.17`
tree): SGLang 0.5.17's frontend imports its server utilities, so it needs more than a client.
"""

import json
import os
import subprocess
import sys

import httpx
import pytest
import sgl_frontend_prompts as client
from gateway_helpers import REPO, python_process
from logprob_reference import check_generation, expected_select, orthrus_forward

EXTRA_PATH = os.environ.get("GATEWAY_SGLANG_PYTHONPATH", "")
CLIENT = "tests/gateway/sgl_frontend_client.py"


def sglang_importable() -> bool:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (EXTRA_PATH, str(REPO)) if p)}
    probe = subprocess.run([sys.executable, "-c", "import sglang; sglang.RuntimeEndpoint"], env=env,
                           capture_output=True, timeout=120)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not sglang_importable(), reason="the sglang frontend package is not importable")


def run_client(url: str, mode: str = "all") -> dict:
    proc = python_process([CLIENT, url, mode], env={"PYTHONPATH": os.pathsep.join([EXTRA_PATH, str(REPO)])})
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


def expected_answer(url: str) -> str:
    r = httpx.post(url + "/generate", timeout=30, json={
        "text": "Q: What is 7 * 6?\nA:", "sampling_params": {"max_new_tokens": 8, "temperature": 0}})
    return r.json()["text"]


def test_sgl_function_on_embedded_backend(gateway, tiny_ckpt):
    got = run_client(gateway.url)
    assert got["answer"] == expected_answer(gateway.url) and got["streamed"] == got["answer"]
    assert got["verify_ct"] >= 1 and len(got["batch"]) == 2
    # sgl.select scores the choices by prompt logprobs; gen(return_logprob=True) reports them
    forward, tok = orthrus_forward(tiny_ckpt), gateway.engine.tokenizer
    choice, means = expected_select(forward, tok, client.SELECT_PROMPT, client.CHOICES)
    assert got["normalized_prompt_logprobs"] == pytest.approx(means, abs=1e-4)
    assert got["selected"] == choice and len(set(means)) == len(means)
    check_generation(forward, tok, client.LOGPROB_PROMPT, got, start=client.LOGPROB_START, top=client.TOP_LOGPROBS)


def test_sgl_function_on_sglang_backend(tiny_ckpt):
    from gateway_helpers import LiveServer, free_port, settings
    from test_gateway_sglang_backend import StandInProcess

    standin = StandInProcess(tiny_ckpt, free_port()).start()
    try:
        with LiveServer(settings(None, backend="sglang", backend_url=standin.url)) as gw:
            got = run_client(gw.url, "basic")  # the stand-in speaks no logprobs: see test_gateway_real_sglang
            assert got["answer"] == expected_answer(gw.url) and got["streamed"] == got["answer"]
    finally:
        standin.stop()
