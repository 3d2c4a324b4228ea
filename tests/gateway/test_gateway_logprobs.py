"""Logprobs through the gateway (embedded engine), on every route, against an independent forward.

Orthrus steps here accept several drafts (oracle drafts, wrong at a cycling position), so the
logprobs of tokens from every verify row are checked, and they equal plain AR decoding's.
"""

import dataclasses

import httpx
import pytest
import torch
from gateway_helpers import LiveServer, OracleDrafts, settings, sse_events
from logprob_reference import orthrus_forward, token_logprobs
from orthrus_server.logprobs import TokenTexts

PROMPT = "Once upon a time"
GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
ASK = {"return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": 3, "token_ids_logprob": [0, 65, 258],
       "return_text_in_logprobs": True}


@pytest.fixture(scope="module")
def server(tiny_ckpt):
    from orthrus_sglang import SamplingParams
    from orthrus_sglang.ref.engine import Engine
    from orthrus_server.backends.embedded import EmbeddedBackend

    s = settings(tiny_ckpt, max_batch_size=4)
    engine = Engine(tiny_ckpt, max_batch_size=4)
    prompts = [engine.tokenizer.encode(PROMPT), chat_ids(engine.tokenizer)]
    longer = SamplingParams(max_new_tokens=48, ignore_eos=True)
    refs = {tuple(p): r.token_ids for p, r in zip(prompts, engine.generate(prompts, longer, ar_only=True))}
    engine.draft_hook = OracleDrafts(refs, engine.config.vocab_size)
    with LiveServer(s, backend=EmbeddedBackend(s, engine=engine)) as server:
        yield server


@pytest.fixture(scope="module")
def forward(tiny_ckpt):
    return orthrus_forward(tiny_ckpt)


def chat_ids(tok) -> list[int]:
    """The gateway's own chat prompt for PROMPT (server/prompting.py)."""
    text = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False)
    return tok.encode(text, add_special_tokens=False)


def generate(server, **body) -> dict:
    r = httpx.post(server.url + "/generate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_native_logprobs_orthrus_equal_ar_only_and_the_reference(server, forward):
    tok = server.engine.tokenizer
    orthrus = generate(server, text=PROMPT, sampling_params=GREEDY, **ASK)
    ar = generate(server, text=PROMPT, sampling_params={**GREEDY, "ar_only": True}, **ASK)
    meta, ar_meta = orthrus["meta_info"], ar["meta_info"]
    assert orthrus["output_ids"] == ar["output_ids"] and meta["spec_verify_ct"] < 15  # multi-token steps
    assert sum(meta["orthrus"]["accepted_per_position"]) > 0
    for key in ("output_token_logprobs", "output_top_logprobs", "output_token_ids_logprobs"):
        assert _numbers(meta[key]) == pytest.approx(_numbers(ar_meta[key]), abs=1e-5), key
        assert _ids(meta[key]) == _ids(ar_meta[key]), key
    assert meta["input_token_logprobs"] == ar_meta["input_token_logprobs"]  # the same prefill

    prompt_ids = tok.encode(PROMPT)
    ids = prompt_ids + orthrus["output_ids"]
    lp = torch.log_softmax(forward(ids), dim=-1)
    assert [t for _, t, _ in meta["output_token_logprobs"]] == orthrus["output_ids"]
    assert meta["output_token_logprobs_length"] == 16
    for j, (value, token, text) in enumerate(meta["output_token_logprobs"]):
        row = lp[len(prompt_ids) - 1 + j]
        assert value == pytest.approx(row[token].item(), abs=1e-4) and text == tok.decode([token])
        assert [t for _, t, _ in meta["output_top_logprobs"][j]] == row.topk(3).indices.tolist()
        assert [v for v, _, _ in meta["output_token_ids_logprobs"][j]] == pytest.approx(
            row[[0, 65, 258]].tolist(), abs=1e-4)
    assert [v for v, _, _ in meta["input_token_logprobs"]] == pytest.approx(token_logprobs(forward, prompt_ids),
                                                                            abs=1e-4)
    assert meta["input_top_logprobs"][0] is None and meta["input_token_ids_logprobs"][0] is None
    assert len(meta["input_top_logprobs"]) == len(prompt_ids)


def test_sampled_logprobs_are_the_temperature_scaled_ar_ones(server, forward):
    sp = {"max_new_tokens": 12, "temperature": 0.8, "top_k": 40, "sampling_seed": 7, "ignore_eos": True}
    prompt_ids = server.engine.tokenizer.encode(PROMPT)
    for extra in ({}, {"ar_only": True}):
        out = generate(server, input_ids=prompt_ids, sampling_params={**sp, **extra}, return_logprob=True)
        lp = torch.log_softmax(forward(prompt_ids + out["output_ids"]) / 0.8, dim=-1)
        got = out["meta_info"]["output_token_logprobs"]
        assert [v for v, _, _ in got] == pytest.approx(
            [lp[len(prompt_ids) - 1 + j, t].item() for j, t in enumerate(out["output_ids"])], abs=1e-4)
        assert out["meta_info"]["input_token_logprobs"] == []  # logprob_start_len -1: none of the prompt
        assert all(text is None for _, _, text in got)  # return_text_in_logprobs is off


def test_native_stream_logprobs_are_cumulative_and_end_as_the_json(server):
    body = {"text": PROMPT, "sampling_params": GREEDY, **ASK}
    full = generate(server, **body)["meta_info"]
    with httpx.stream("POST", server.url + "/generate", json={**body, "stream": True}, timeout=60) as r:
        frames = sse_events(r.iter_lines())[:-1]
    assert len(frames) > 2
    for f in frames:
        meta = f["meta_info"]
        assert len(meta["output_token_logprobs"]) == meta["completion_tokens"] == len(f["output_ids"])
        assert meta["output_token_logprobs"] == full["output_token_logprobs"][: meta["completion_tokens"]]
        assert meta["input_token_logprobs"] == full["input_token_logprobs"]
    assert frames[-1]["meta_info"]["output_top_logprobs"] == full["output_top_logprobs"]


def test_prefill_only_batch_scores_prompts_like_sgl_select(server, forward):
    tok = server.engine.tokenizer
    texts = ["The sky is blue", "The sky is green"]
    start = len(tok.encode("The sky is")) - 2
    out = generate(server, text=texts, sampling_params={"max_new_tokens": 0, "temperature": 0}, return_logprob=True,
                   logprob_start_len=start, return_text_in_logprobs=True)
    for text, r in zip(texts, out):
        ids = tok.encode(text)
        meta = r["meta_info"]
        assert r["output_ids"] == [] and meta["output_token_logprobs"] == []
        assert [t for _, t, _ in meta["input_token_logprobs"]] == ids[start:]
        assert meta["input_token_logprobs"][0][0] is None
        assert [v for v, _, _ in meta["input_token_logprobs"][1:]] == pytest.approx(
            token_logprobs(forward, ids)[start + 1:], abs=1e-4)


def test_chat_logprobs_equal_native_ones(server):
    tok = server.engine.tokenizer
    ids = chat_ids(tok)
    native = generate(server, input_ids=ids, sampling_params={**GREEDY, "max_new_tokens": 10}, return_logprob=True,
                      top_logprobs_num=2)["meta_info"]
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 10, "ignore_eos": True,
            "logprobs": True, "top_logprobs": 2}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()
    content = r["choices"][0]["logprobs"]["content"]
    assert [c["logprob"] for c in content] == [v for v, _, _ in native["output_token_logprobs"]]
    assert [c["token"] for c in content] == [tok.decode([t]) for _, t, _ in native["output_token_logprobs"]]
    assert all(len(c["top_logprobs"]) == 2 for c in content)
    # A byte token that is part of a UTF-8 character reads U+FFFD; its `bytes` are still its own byte.
    assert [c["bytes"] for c in content] == TokenTexts(tok).bytes([t for _, t, _ in native["output_token_logprobs"]])
    assert all(c["bytes"] == list(c["token"].encode()) or (c["token"] == "\ufffd" and len(c["bytes"]) == 1
                                                          and c["bytes"][0] >= 0x80) for c in content)
    assert [c["top_logprobs"][0]["logprob"] for c in content] == [top[0][0] for top in native["output_top_logprobs"]]
    with httpx.stream("POST", server.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=60) as s:
        chunks = [e["choices"][0] for e in sse_events(s.iter_lines())[:-1] if e["choices"]]
    assert [c for ch in chunks if ch.get("logprobs") for c in ch["logprobs"]["content"]] == content


def test_completion_echo_logprobs_cover_prompt_and_output(server):
    tok = server.engine.tokenizer
    ids = tok.encode(PROMPT)
    native = generate(server, input_ids=ids, sampling_params={**GREEDY, "max_new_tokens": 6}, return_logprob=True,
                      logprob_start_len=0, top_logprobs_num=2)
    body = {"prompt": PROMPT, "max_tokens": 6, "ignore_eos": True, "echo": True, "logprobs": 2}
    choice = httpx.post(server.url + "/v1/completions", json=body, timeout=60).json()["choices"][0]
    lps, meta = choice["logprobs"], native["meta_info"]
    assert choice["text"] == PROMPT + native["text"]
    assert lps["token_logprobs"] == [v for v, _, _ in meta["input_token_logprobs"] + meta["output_token_logprobs"]]
    assert "".join(lps["tokens"]) == choice["text"]  # ASCII on a byte tokenizer: tokens tile the text
    assert lps["text_offset"] == [sum(len(t) for t in lps["tokens"][:i]) for i in range(len(lps["tokens"]))]
    assert lps["top_logprobs"][0] is None  # nothing precedes the first prompt token
    for token, value, top in list(zip(lps["tokens"], lps["token_logprobs"], lps["top_logprobs"]))[1:]:
        assert top[token] == value and 1 <= len(top) <= 3  # the 2 best and the chosen one (texts may collide)
    with httpx.stream("POST", server.url + "/v1/completions", json={**body, "stream": True}, timeout=60) as s:
        chunks = [e["choices"][0] for e in sse_events(s.iter_lines())[:-1] if e["choices"]]
    assert "".join(c["text"] for c in chunks) == choice["text"]
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        assert [x for c in chunks if c["logprobs"] for x in c["logprobs"][key]] == lps[key], key
    scored = httpx.post(server.url + "/v1/completions", json={**body, "max_tokens": 0}, timeout=60).json()
    assert scored["choices"][0]["text"] == PROMPT and scored["usage"]["completion_tokens"] == 0
    assert scored["choices"][0]["logprobs"]["token_logprobs"] == lps["token_logprobs"][: len(ids)]


def test_every_sglang_generate_field_at_its_default_is_accepted(server):
    """Each field of SGLang 0.5.17's GenerateReqInput and SamplingParams, at its default value."""
    io_struct = pytest.importorskip("sglang.srt.managers.io_struct")
    sampling = pytest.importorskip("sglang.srt.sampling.sampling_params")
    internal = {"stop_strs", "stop_regex_strs", "stop_str_max_len", "stop_regex_max_len", "is_normalized"}
    sp = {f: getattr(sampling.SamplingParams(), f) for f in sampling.SamplingParams.__struct_fields__
          if f not in internal}
    body = {f.name: _default(f) for f in dataclasses.fields(io_struct.GenerateReqInput)
            if f.name not in ("text", "input_ids", "sampling_params")}
    r = httpx.post(server.url + "/generate", timeout=60,
                   json={**body, "text": PROMPT, "sampling_params": {**sp, "max_new_tokens": 4}})
    assert r.status_code == 200, r.text
    assert r.json()["meta_info"]["completion_tokens"] == 4 and "input_token_logprobs" not in r.json()["meta_info"]


def _default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()


def _numbers(rows) -> list:
    flat = []
    for row in rows:
        if row and isinstance(row[0], list):
            flat += [v for v, _, _ in row]
        elif row:
            flat.append(row[0])
    return flat


def _ids(rows) -> list:
    return [[t for _, t, _ in row] if row and isinstance(row[0], list) else row[1] for row in rows]
