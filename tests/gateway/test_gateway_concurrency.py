"""64 concurrent streams on the embedded backend: all finish, no token lost or duplicated, and
greedy outputs equal the same prompts run alone (batch 1) on a separate engine.

Every third request also carries a stop string taken from the middle of its solo output, so
sequences leave the running batch early (aborted in the engine) while the others go on.
"""

import asyncio
import random

import httpx
import openai
from gateway_helpers import sse_events

from orthrus_sglang import SamplingParams

NUM = 64


def make_requests():
    rng = random.Random(7)
    reqs = []
    for i in range(NUM):
        prompt = [rng.randrange(256) for _ in range(rng.randint(1, 30))]
        reqs.append({"prompt": prompt, "max_tokens": rng.randint(8, 40), "ignore_eos": i % 2 == 0})
    return reqs


async def stream_raw(client: httpx.AsyncClient, body: dict) -> dict:
    async with client.stream("POST", "/v1/completions", json={**body, "stream": True, "return_token_ids": True,
                                                              "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200
        events = sse_events([line async for line in r.aiter_lines()])
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = [e for e in events[:-1] if e["choices"]]
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]]
    assert len(finish) == 1
    return {"token_ids": [t for c in chunks for t in c["choices"][0]["token_ids"]],
            "text": "".join(c["choices"][0]["text"] for c in chunks), "finish_reason": finish[0],
            "usage": events[-2]["usage"]}


async def stream_openai(client: openai.AsyncOpenAI, model: str, body: dict) -> dict:
    stream = await client.completions.create(model=model, prompt=body["prompt"], max_tokens=body["max_tokens"],
                                             stop=body.get("stop"), stream=True,
                                             extra_body={"ignore_eos": body["ignore_eos"],
                                                                      "return_token_ids": True})
    ids, text, finish = [], "", None
    async for chunk in stream:
        c = chunk.choices[0]
        ids += c.model_extra.get("token_ids", [])
        text += c.text
        finish = c.finish_reason or finish
    return {"token_ids": ids, "text": text, "finish_reason": finish, "usage": None}


def test_64_concurrent_streams_match_solo_runs(gateway, tiny_ckpt):
    from orthrus_sglang.ref.engine import Engine

    reqs = make_requests()
    model = gateway.state.settings.model_id
    solo = Engine(tiny_ckpt, max_batch_size=1)
    tok = solo.tokenizer
    refs = [solo.generate([b["prompt"]], SamplingParams(max_new_tokens=b["max_tokens"],
                                                        ignore_eos=b["ignore_eos"]))[0] for b in reqs]
    expected_text = [tok.decode(r.token_ids, skip_special_tokens=True) for r in refs]
    for i in range(0, NUM, 3):
        text = expected_text[i]
        stop = next((ch for ch in text[len(text) // 2:] if ch != "\ufffd"), "")
        if stop:
            reqs[i]["stop"] = [stop]
            expected_text[i] = text[: text.index(stop)]

    async def main():
        limits = httpx.Limits(max_connections=NUM, max_keepalive_connections=NUM)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=120, limits=limits) as client:
            oa = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0,
                                    http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=120))
            jobs = [stream_raw(client, b) if i % 4 else stream_openai(oa, model, b) for i, b in enumerate(reqs)]
            return await asyncio.gather(*jobs)

    results = asyncio.run(main())
    assert gateway.worker.peak_running == 16  # the engine really batched them (max_batch_size 16)

    num_stopped = 0
    for body, got, ref, text in zip(reqs, results, refs, expected_text):
        assert got["text"] == text
        if "stop" in body:
            num_stopped += 1
            assert got["finish_reason"] == "stop"
            assert got["token_ids"] == ref.token_ids[: len(got["token_ids"])]  # a prefix: nothing lost or doubled
        else:
            assert got["token_ids"] == ref.token_ids
            assert got["finish_reason"] == ref.finish_reason
        if got["usage"]:
            assert got["usage"]["completion_tokens"] == len(got["token_ids"])
    assert num_stopped >= 15
    assert gateway.state.admission.active == 0 and gateway.worker.running == 0
