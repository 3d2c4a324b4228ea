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
from gateway_helpers import REPO, python_process

EXTRA_PATH = os.environ.get("GATEWAY_SGLANG_PYTHONPATH", "")
CLIENT = "tests/gateway/sgl_frontend_client.py"


def sglang_importable() -> bool:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (EXTRA_PATH, str(REPO)) if p)}
    probe = subprocess.run([sys.executable, "-c", "import sglang; sglang.RuntimeEndpoint"], env=env,
                           capture_output=True, timeout=120)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not sglang_importable(), reason="the sglang frontend package is not importable")


def run_client(url: str) -> dict:
    proc = python_process([CLIENT, url], env={"PYTHONPATH": os.pathsep.join([EXTRA_PATH, str(REPO)])})
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


def expected_answer(url: str) -> str:
    r = httpx.post(url + "/generate", timeout=30, json={
        "text": "Q: What is 7 * 6?\nA:", "sampling_params": {"max_new_tokens": 8, "temperature": 0}})
    return r.json()["text"]


def test_sgl_function_on_embedded_backend(gateway):
    got = run_client(gateway.url)
    assert got["answer"] == expected_answer(gateway.url) and got["streamed"] == got["answer"]
    assert got["verify_ct"] >= 1 and len(got["batch"]) == 2


def test_sgl_function_on_sglang_backend(tiny_ckpt):
    from gateway_helpers import LiveServer, free_port, settings
    from test_gateway_sglang_backend import StandInProcess

    standin = StandInProcess(tiny_ckpt, free_port()).start()
    try:
        with LiveServer(settings(None, backend="sglang", backend_url=standin.url)) as gw:
            got = run_client(gw.url)
            assert got["answer"] == expected_answer(gw.url) and got["streamed"] == got["answer"]
    finally:
        standin.stop()
