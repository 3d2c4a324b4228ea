"""ORTHRUS in the real SGLang HTTP server, started as users start it, and everything in front of it.

`python -m sglang.launch_server ... --speculative-algorithm ORTHRUS --enable-metrics` (CPU engine)
runs as a subprocess; against it: the native /generate route, the OpenAI chat route (plain and
streamed), an SGLang frontend script (the README's), /metrics (SGLang's and our orthrus:* series),
and our gateway (`python -m orthrus_server --backend sglang`) in front of it. Greedy text, token ids and
per-request acceptance statistics must equal the reference engine's on the same prompt tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sgl_engine import require_sglang
from sgl_server import free_port, launch_gateway, launch_sglang_server

from orthrus_sglang import SamplingParams
from orthrus_sglang.prompting import encode_prompt
from orthrus_sglang.ref.engine import Engine as ReferenceEngine
from orthrus_sglang.testing import write_tiny_checkpoint

BLOCK = 4
QUESTION = "Hello there"
MAX_NEW_TOKENS = 24
TIMEOUT = 120  # seconds per HTTP request: a 2-core CI machine may be busy

# The README's SGLang frontend snippet, verbatim (the test points it at its own server).
README_URL = "http://127.0.0.1:30000"
FRONTEND_SCRIPT = '''\
import sglang as sgl

@sgl.function
def qa(s, question):
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=16, temperature=0))

# Orthrus checkpoints speak ChatML; without chat_template_name the frontend picks a template
# from the model path and falls back to its "USER:/ASSISTANT:" default.
sgl.set_default_backend(sgl.RuntimeEndpoint("http://127.0.0.1:30000", chat_template_name="chatml"))
state = qa.run(question="What is 2+2?")
print(state["answer"])
print(state.get_meta_info("answer")["spec_correct_drafts_histogram"])
'''
REPORT_LINE = 'import json; print(json.dumps({"text": state.text(), "answer": state["answer"], ' \
              '"meta": state.get_meta_info("answer")}))\n'


# ---- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("sgl-server-qwen3"), backbone="qwen3", diff_from_ar=True,
                                 block_size=BLOCK)


@pytest.fixture(scope="module")
def reference(checkpoint):
    engine = ReferenceEngine(checkpoint, block_size=BLOCK, max_batch_size=4)

    def greedy(prompt_ids: list[int], max_new_tokens: int = MAX_NEW_TOKENS):
        result = engine.generate([list(prompt_ids)], SamplingParams(max_new_tokens=max_new_tokens))[0]
        return result, engine.tokenizer.decode(result.token_ids, skip_special_tokens=True)

    greedy.tokenizer = engine.tokenizer
    return greedy


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    require_sglang()
    logs = tmp_path_factory.mktemp("sgl-server-logs")
    srv = launch_sglang_server(checkpoint, free_port(), logs / "sglang.log", timeout=120, extra_args=[
        "--speculative-algorithm", "ORTHRUS", "--speculative-num-draft-tokens", str(BLOCK), "--enable-metrics"])
    try:
        yield srv
    finally:
        srv.stop()
        print(f"\n[sglang] log: {srv.log_path}")


@pytest.fixture(scope="module")
def gateway(server, checkpoint, tmp_path_factory):
    logs = tmp_path_factory.mktemp("gateway-logs")
    gw = launch_gateway(checkpoint, server.url, free_port(), logs / "gateway.log", timeout=120)
    try:
        yield gw
    finally:
        gw.stop()


def chat_text(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)


def post_generate(url: str, **body) -> dict:
    r = httpx.post(url + "/generate", json=body, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def chat_generate(server, reference):
    """One /generate call with the chat-formatted prompt as text, and the reference's greedy decode."""
    tok = reference.tokenizer
    text = chat_text(tok, QUESTION)
    ids = encode_prompt(tok, QUESTION)
    assert tok.encode(text) == ids  # SGLang tokenizes `text` with tokenizer.encode: the same prompt tokens
    expected, expected_text = reference(ids)
    assert expected.stats.num_accepted_drafts > 0 and expected.stats.accept_length_histogram[0] > 0, \
        "the test needs both accepted and rejected drafts"
    got = post_generate(server.url, text=text, sampling_params={"temperature": 0, "max_new_tokens": MAX_NEW_TOKENS})
    return got, expected, expected_text, ids


def assert_meta_matches(meta: dict, stats, num_tokens: int) -> None:
    """SGLang's per-request speculative meta_info == the reference engine's DecodeStats."""
    hist = meta["spec_correct_drafts_histogram"]  # SGLang drops trailing zero bins
    assert hist == stats.accept_length_histogram[: len(hist)]
    assert sum(stats.accept_length_histogram[len(hist):]) == 0
    assert meta["spec_verify_ct"] == stats.num_steps
    assert meta["spec_num_correct_drafts"] == stats.num_accepted_drafts
    assert meta["completion_tokens"] == num_tokens == stats.num_tokens
    # SGLang's accept length: completion tokens (the prefill's first one included) per verify step.
    assert meta["spec_accept_length"] == pytest.approx(num_tokens / stats.num_steps)


# ---- the native route ------------------------------------------------------------------------
def test_generate_text_equals_reference(chat_generate):
    got, expected, expected_text, ids = chat_generate
    assert got["meta_info"]["prompt_tokens"] == len(ids)
    assert got["output_ids"] == expected.token_ids
    assert got["text"] == expected_text
    assert got["meta_info"]["finish_reason"]["type"] == expected.finish_reason == "length"
    assert_meta_matches(got["meta_info"], expected.stats, MAX_NEW_TOKENS)


# ---- the OpenAI route ------------------------------------------------------------------------
def test_openai_chat_completions_equal_reference(server, reference, chat_generate):
    _, expected, expected_text, _ = chat_generate
    body = {"model": "default", "messages": [{"role": "user", "content": QUESTION}], "temperature": 0,
            "max_tokens": MAX_NEW_TOKENS}
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        full = r.json()
        assert full["choices"][0]["message"]["content"] == expected_text
        assert full["choices"][0]["finish_reason"] == "length"
        assert full["usage"]["completion_tokens"] == len(expected.token_ids)

        deltas, finish = [], None
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
            assert s.status_code == 200
            for line in s.iter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                choice = json.loads(line[5:])["choices"][0]
                deltas.append(choice["delta"].get("content") or "")
                finish = choice.get("finish_reason") or finish
    assert "".join(deltas) == expected_text
    assert finish == "length"


# ---- the SGLang frontend ---------------------------------------------------------------------
def test_frontend_script_from_the_readme(server, reference, tmp_path):
    """The README snippet, run as a script (`python qa.py`); one reporting line is appended to it."""
    script = tmp_path / "qa.py"
    script.write_text(FRONTEND_SCRIPT.replace(README_URL, server.url) + REPORT_LINE)
    run = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, timeout=TIMEOUT,
                         cwd=tmp_path, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    out = run.stdout.decode()  # bytes: the tiny model's text may hold a "\r", which text mode would rewrite
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    report_line = out.rstrip("\n").rsplit("\n", 1)[-1]
    report = json.loads(report_line)
    meta = report["meta"]
    assert out == f"{report['answer']}\n{meta['spec_correct_drafts_histogram']}\n{report_line}\n"  # what the user sees
    # With the ChatML template the frontend sends exactly the checkpoint's chat prompt.
    prompt = chat_text(reference.tokenizer, "What is 2+2?")
    assert report["text"].startswith(prompt)
    expected, expected_text = reference(encode_prompt(reference.tokenizer, "What is 2+2?"), max_new_tokens=16)
    assert report["answer"] == expected_text
    assert_meta_matches(meta, expected.stats, len(expected.token_ids))


def test_frontend_default_template_is_not_chatml(server, reference):
    """The same program with RuntimeEndpoint(url) alone sends "USER:...\\nASSISTANT:" (the frontend's
    default template for a model path it does not recognise), not the checkpoint's ChatML. The server
    still decodes that exact text as the reference engine does."""
    import sglang as sgl

    @sgl.function
    def qa(s, question):
        s += sgl.user(question)
        s += sgl.assistant(sgl.gen("answer", max_tokens=16, temperature=0))

    backend = sgl.RuntimeEndpoint(server.url)
    assert backend.chat_template.name == "default"
    state = qa.run(question=QUESTION, backend=backend)
    sent = "USER:" + QUESTION + "\nASSISTANT:"
    assert state.text() == sent + state["answer"] + "\n"
    expected, expected_text = reference(reference.tokenizer.encode(sent), max_new_tokens=16)
    assert state["answer"] == expected_text
    assert_meta_matches(state.get_meta_info("answer"), expected.stats, len(expected.token_ids))


# ---- /metrics --------------------------------------------------------------------------------
def scrape(url: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(url + "/metrics", timeout=TIMEOUT)
    assert r.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def metric(samples: dict, name: str, **labels) -> float:
    """The sum of `name` over the series whose labels include `labels`; KeyError when none exists."""
    found = [v for (n, lbl), v in samples.items() if n == name and set(labels.items()) <= set(lbl)]
    if not found:
        raise KeyError(f"no series {name}{labels or ''} in /metrics")
    return sum(found)


ORTHRUS_SERIES = ["orthrus:verify_steps_total", "orthrus:full_block_accept_total", "orthrus:accept_drafts_count",
                  "orthrus:accept_drafts_sum", "sglang:spec_verify_calls_total"]


def test_metrics_count_the_requests(server, reference):
    """Deltas over two concurrent requests equal what their meta_info (and the reference) report.

    Deltas, because SGLang's startup warmup request is counted too."""
    tok = reference.tokenizer
    before = scrape(server.url)
    assert metric(before, "sglang:spec_accept_length") >= 0  # SGLang's own series is there
    for name in ORTHRUS_SERIES:
        metric(before, name)
    questions = ["Name a color.", "What is 7 * 6?"]
    with ThreadPoolExecutor(2) as pool:  # both in one batch most of the time
        got = list(pool.map(lambda q: post_generate(server.url, text=chat_text(tok, q), sampling_params={
            "temperature": 0, "max_new_tokens": MAX_NEW_TOKENS}), questions))
    for q, g in zip(questions, got):
        expected, _ = reference(encode_prompt(tok, q))
        assert g["output_ids"] == expected.token_ids
        assert_meta_matches(g["meta_info"], expected.stats, len(expected.token_ids))

    steps = sum(g["meta_info"]["spec_verify_ct"] for g in got)
    hist = [0] * BLOCK
    for g in got:
        for n, c in enumerate(g["meta_info"]["spec_correct_drafts_histogram"]):
            hist[n] += c
    expect = {"orthrus:verify_steps_total": steps, "sglang:spec_verify_calls_total": steps,
              "orthrus:accept_drafts_count": steps, "orthrus:full_block_accept_total": hist[BLOCK - 1],
              "orthrus:accept_drafts_sum": sum(n * c for n, c in enumerate(hist))}
    expect.update({("orthrus:accept_drafts_bucket", f"{n + 0.5}"): sum(hist[: n + 1]) for n in range(BLOCK)})
    expect.update({("orthrus:accepted_position_total", str(i)): sum(hist[i:]) for i in range(1, BLOCK)})

    def deltas(after: dict) -> dict:
        out = {}
        for key in expect:
            if isinstance(key, str):
                out[key] = metric(after, key) - metric(before, key)
            elif key[0].endswith("_bucket"):
                out[key] = metric(after, key[0], le=key[1]) - metric(before, key[0], le=key[1])
            else:
                out[key] = metric(after, key[0], position=key[1]) - metric(before, key[0], position=key[1])
        return out

    deadline = time.monotonic() + 10  # counters are written by the scheduler / tokenizer manager processes
    while (seen := deltas(after := scrape(server.url))) != expect and time.monotonic() < deadline:
        time.sleep(0.2)
    assert seen == expect
    assert hist[1] + hist[2] + hist[3] > 0, "the test needs accepted drafts"
    accept_length = metric(after, "sglang:spec_accept_length")  # a gauge over SGLang's decode log window
    assert accept_length == 0 or 1 <= accept_length <= BLOCK
    print(f"\n[metrics] deltas {seen}; sglang:spec_accept_length {accept_length}")


# ---- the gateway in front of SGLang ------------------------------------------------------------
def test_gateway_orthrus_stats_match_sglang_and_reference(gateway, chat_generate, reference):
    direct, expected, expected_text, ids = chat_generate
    r = httpx.post(gateway.url + "/v1/completions", timeout=TIMEOUT, json={
        "prompt": chat_text(reference.tokenizer, QUESTION), "max_tokens": MAX_NEW_TOKENS, "temperature": 0,
        "return_token_ids": True})
    assert r.status_code == 200, r.text
    body = r.json()
    choice = body["choices"][0]
    assert choice["token_ids"] == expected.token_ids == direct["output_ids"]
    assert choice["text"] == expected_text
    assert body["usage"]["prompt_tokens"] == len(ids)
    stats, meta = body["orthrus"], direct["meta_info"]
    assert stats["block_size"] == BLOCK
    assert stats["steps"] == meta["spec_verify_ct"] == expected.stats.num_steps
    assert stats["accept_length_histogram"] == expected.stats.accept_length_histogram
    assert stats["accept_length_histogram"][: len(meta["spec_correct_drafts_histogram"])] == meta["spec_correct_drafts_histogram"]
    assert stats["accepted_per_position"] == expected.stats.accepted_per_position
    assert stats["tokens"] == expected.stats.num_tokens == MAX_NEW_TOKENS
    assert stats["tau"] == round(expected.stats.tau, 4)
    assert choice["orthrus"] == stats  # one choice: the request's stats are the choice's


def test_readme_shows_this_frontend_script():
    """The README's frontend script is the one this module runs (up to a trailing output comment)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    readme_lines = [line.split("   # printed")[0] for line in readme.splitlines()]
    for line in FRONTEND_SCRIPT.splitlines():
        assert line in readme_lines, f"README lacks the frontend script line {line!r}"
