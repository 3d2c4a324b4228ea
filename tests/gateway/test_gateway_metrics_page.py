"""/metrics (Prometheus), /orthrus/stats and the live page, after real traffic with real acceptance.

The engine's draft hook feeds drafts from the AR reference (right for a cycling number of
positions), so steps accept 0..B-1 drafts and every statistic has something to show. The page
is rendered by a real headless Chromium: a screenshot is written and the DOM is checked.
"""

import asyncio
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import httpx
import pytest
from gateway_helpers import LiveServer, OracleDrafts, settings
from prometheus_client.parser import text_string_to_metric_families

from orthrus_sglang import SamplingParams

PROMPTS = [[60 + i, 61 + i, 62 + i, 63 + i] for i in range(6)]
MAX_TOKENS = 40


@pytest.fixture(scope="module")
def busy(tiny_ckpt):
    from orthrus_sglang.ref.engine import Engine
    from orthrus_server.backends.embedded import EmbeddedBackend

    s = settings(tiny_ckpt)
    engine = Engine(tiny_ckpt, max_batch_size=8)
    longer = SamplingParams(max_new_tokens=MAX_TOKENS + 4, ignore_eos=True)
    refs = {tuple(p): r.token_ids for p, r in zip(PROMPTS, engine.generate(PROMPTS, longer, ar_only=True))}
    engine.draft_hook = OracleDrafts(refs, engine.config.vocab_size)
    with LiveServer(s, backend=EmbeddedBackend(s, engine=engine)) as server:

        async def traffic():
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
                bodies = [{"prompt": p, "max_tokens": MAX_TOKENS, "ignore_eos": True, "stream": i % 2 == 0}
                          for i, p in enumerate(PROMPTS)]
                rs = await asyncio.gather(*(c.post("/v1/completions", json=b) for b in bodies))
            return [r.text for r in rs]

        replies = asyncio.run(traffic())
        yield server, replies


def samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_prometheus_metrics(busy):
    server, _ = busy
    m = samples(httpx.get(server.url + "/metrics", timeout=10).text)
    n = len(PROMPTS)
    assert m[("orthrus_requests_total", (("route", "completions"), ("status", "200")))] == n
    assert m[("orthrus_generation_tokens_total", ())] == n * MAX_TOKENS
    assert m[("orthrus_prompt_tokens_total", ())] == sum(map(len, PROMPTS))
    assert m[("orthrus_time_to_first_token_seconds_count", ())] == n
    assert m[("orthrus_e2e_request_latency_seconds_count", ())] == n
    assert m[("orthrus_inter_token_latency_seconds_count", ())] == n * (MAX_TOKENS - 1)  # all but the first token
    assert m[("orthrus_tau_count", ())] == n
    steps = m[("orthrus_decode_steps_total", ())]
    accepted = [m[("orthrus_accepted_drafts_total", (("position", str(i)),))] for i in (1, 2, 3)]
    assert accepted[0] >= accepted[1] >= accepted[2] > 0  # a draft is only accepted after its predecessors
    by_length = {k: m[("orthrus_accept_length_steps_total", (("accepted", str(k)),))] for k in range(4)}
    assert sum(by_length.values()) == steps
    assert sum(k * v for k, v in by_length.items()) == sum(accepted)
    # Each step verifies n+1 tokens, the prefill emits 1; a last step may be cut by the length budget.
    assert n * MAX_TOKENS <= sum(accepted) + steps + n < n * (MAX_TOKENS + 4)
    for gauge in ("orthrus_queue_depth", "orthrus_active_requests", "orthrus_backend_running_sequences"):
        assert m[(gauge, ())] == 0


def test_live_stats_json(busy):
    server, _ = busy
    s = httpx.get(server.url + "/orthrus/stats", timeout=10).json()
    assert s["sequences"] == len(PROMPTS) and s["block_size"] == 4
    assert s["tau"] > 1.5  # the oracle drafts are accepted
    rates = s["acceptance_rate_per_position"]
    assert len(rates) == 3 and rates[0] >= rates[1] >= rates[2] > 0
    assert sum(p["tokens_per_s"] for p in s["series"]) + 0 <= len(PROMPTS) * MAX_TOKENS
    assert sum(s["accept_length_histogram"]) == s["steps"]


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (apt-get install chromium)")
def test_live_page_in_headless_chromium(busy, tmp_path):
    server, _ = busy
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", "--virtual-time-budget=4000", "--window-size=1400,1000"]
    shot = tmp_path / "gateway-page.png"
    subprocess.run(flags + [f"--user-data-dir={tmp_path / 'profile-a'}", f"--screenshot={shot}", server.url + "/"],
                   check=True, capture_output=True, timeout=120)
    assert png_size(shot) == (1400, 1000) and shot.stat().st_size > 20_000  # charts drawn, not a blank page
    dom = subprocess.run(flags + [f"--user-data-dir={tmp_path / 'profile-b'}", "--dump-dom", server.url + "/"],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    stats = httpx.get(server.url + "/orthrus/stats", timeout=10).json()
    assert 'data-updates="' in dom  # the script fetched /orthrus/stats and drew at least once
    assert f'<b id="tau">{stats["tau"]:.2f}</b>' in dom
    assert f'<b id="seqs">{len(PROMPTS)}</b>' in dom
    assert '<span id="status" class="">live</span>' in dom
    if os.environ.get("GATEWAY_PAGE_SCREENSHOT"):  # keep the picture where a human can look at it
        Path(os.environ["GATEWAY_PAGE_SCREENSHOT"]).write_bytes(shot.read_bytes())


def test_every_request_counted_once_by_status(busy):
    """One scheme, orthrus_requests_total{route, status}, for answers and refusals alike: 400, 404 (a model, a
    path), 413 (answered by the body-size limit itself) and 200s. Refused requests abort nothing."""
    server, _ = busy  # last in the module: it adds a sequence, which the page tests count
    before = samples(httpx.get(server.url + "/metrics", timeout=10).text)
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    sent = [("/v1/chat/completions", b"{not json", 400), ("/v1/completions", b'{"prompt": "x", "max_tokens": -1}', 400),
            ("/v1/chat/completions", json.dumps({**chat, "model": "nope"}).encode(), 404),
            ("/v1/completions", b"x" * (server.state.settings.max_body_bytes + 1), 413),
            ("/v1/chat/completions", json.dumps(chat).encode(), 200), ("/no/such/path", b"{}", 404)]
    for path, body, status in sent:
        r = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"}, timeout=60)
        assert r.status_code == status, (path, r.text)
    assert httpx.get(server.url + "/v1/models/nope", timeout=10).status_code == 404
    after = samples(httpx.get(server.url + "/metrics", timeout=10).text)

    def delta(route: str, status: int) -> float:
        key = ("orthrus_requests_total", (("route", route), ("status", str(status))))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert [delta("chat", 400), delta("completions", 400), delta("chat", 404), delta("completions", 413),
            delta("chat", 200), delta("other", 404), delta("models", 404)] == [1, 1, 1, 1, 1, 1, 1]
    total = sum(v for (name, _), v in after.items() if name == "orthrus_requests_total")
    assert total - sum(v for (name, _), v in before.items() if name == "orthrus_requests_total") == len(sent) + 1
    assert after[("orthrus_requests_aborted_total", ())] == before[("orthrus_requests_aborted_total", ())]


def test_adaptive_block_policy_is_reported(tiny_ckpt, tmp_path):
    """--block-policy adaptive through the settings: the engine picks B per step, /metrics and /orthrus/stats
    show the steps per chosen B (they add up to the decode steps) and the policy's acceptance estimate."""
    with LiveServer(settings(tiny_ckpt, block_policy="adaptive", max_batch_size=4)) as server:
        for p in PROMPTS[:3]:
            r = httpx.post(server.url + "/v1/completions", json={"prompt": p, "max_tokens": 24, "ignore_eos": True},
                           timeout=60)
            assert r.status_code == 200, r.text
        m = samples(httpx.get(server.url + "/metrics", timeout=10).text)
        stats = httpx.get(server.url + "/orthrus/stats", timeout=10).json()
        dom = None
        if CHROMIUM is not None:  # the live page shows the steps per chosen B
            dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                  f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=4000",
                                  "--dump-dom", server.url + "/"], check=True, capture_output=True, text=True,
                                 timeout=120).stdout
    policy = stats["block_policy"]
    assert policy["adaptive"] and policy["candidates"] == [1, 2, 4]
    by_block = {b: m[("orthrus_block_size_request_steps", (("block_size", str(b)),))] for b in (1, 2, 4)}
    assert sum(by_block.values()) == m[("orthrus_decode_steps_total", ())] > 0
    assert all(v > 0 for v in by_block.values())  # each candidate's cost is measured before any is preferred
    assert {int(b): v for b, v in policy["steps_by_block_size"].items()} == by_block
    assert len(policy["acceptance_by_position"]) == 3
    if dom is not None:
        shown = ", ".join(f"{b}: {policy['steps_by_block_size'][str(b)]}" for b in (1, 2, 4))
        assert f'<span id="policy"> (adaptive; steps by B: {shown})</span>' in dom
