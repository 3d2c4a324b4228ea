"""SGLang's own benchmark client against the gateway as users start it (`python -m orthrus_server`).

`python -m sglang.bench_serving` on its native /generate backend (`--backend sglang`, which sends
every GenerateReqInput field it knows, lora_path null included) and its two OpenAI backends, on a
random dataset cut from a local ShareGPT-format file and tokenized with the checkpoint's tokenizer.
Skipped when SGLang is not installed.
"""

import importlib.util
import json
import subprocess
import sys

import httpx
import pytest
from gateway_helpers import REPO, free_port, python_process, stop_process, wait_http
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sglang") is None, reason="SGLang is not installed")

NUM_PROMPTS, INPUT_LEN, OUTPUT_LEN = 16, 32, 8


@pytest.fixture(scope="module")
def gateway_url(tiny_ckpt):
    port = free_port()
    proc = python_process(["-m", "orthrus_server", "--model", str(tiny_ckpt), "--port", str(port), "--max-batch-size", "8"])
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def sharegpt(tmp_path_factory):
    return write_sharegpt(tmp_path_factory.mktemp("bench") / "sharegpt.json")


def write_sharegpt(path):
    """A ShareGPT-format file: `--dataset-name random` cuts its prompts from the first turns."""
    path.write_text(json.dumps([{"conversations": [
        {"from": "human", "value": f"Question {i}: what does the cat on mat number {i} do all day?"},
        {"from": "gpt", "value": f"The cat on mat {i} sleeps."}]} for i in range(2 * NUM_PROMPTS)]))
    return path


def served(url: str, route: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "orthrus_requests_total" and s.labels == {"route": route, "status": "200"})


def run_bench(url: str, backend: str, tokenizer, dataset, out) -> dict:
    """One `python -m sglang.bench_serving` run; its result line."""
    run = subprocess.run(
        [sys.executable, "-m", "sglang.bench_serving", "--backend", backend, "--base-url", url,
         "--dataset-name", "random", "--dataset-path", str(dataset), "--tokenizer", str(tokenizer),
         "--num-prompts", str(NUM_PROMPTS), "--random-input-len", str(INPUT_LEN),
         "--random-output-len", str(OUTPUT_LEN), "--random-range-ratio", "1", "--seed", "0",
         "--output-file", str(out), "--disable-tqdm"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text().splitlines()[-1])
    assert result["completed"] == NUM_PROMPTS, run.stdout[-3000:]
    assert result["total_output_tokens"] == NUM_PROMPTS * OUTPUT_LEN  # ignore_eos: every request ran to length
    return result


@pytest.mark.parametrize("backend, route", [("sglang", "generate"), ("sglang-oai", "completions"),
                                            ("sglang-oai-chat", "chat")])
def test_bench_serving_completes_every_request(gateway_url, tiny_ckpt, sharegpt, tmp_path, backend, route):
    before = served(gateway_url, route)
    result = run_bench(gateway_url, backend, tiny_ckpt, sharegpt, tmp_path / "result.jsonl")
    assert served(gateway_url, route) - before == NUM_PROMPTS + 1  # and its warm-up request
    assert result["accept_length"] >= 1.0  # the gateway's measured tau, from /server_info's internal_states
