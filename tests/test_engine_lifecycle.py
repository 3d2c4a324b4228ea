"""Continuous batching: requests join and leave between steps; bad input is refused clearly."""

import pytest

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine

GREEDY = SamplingParams(max_new_tokens=16, ignore_eos=True)


def test_requests_joining_mid_flight_get_the_same_tokens(tiny_qwen3):
    engine = Engine(tiny_qwen3, block_size=4, max_batch_size=3)
    prompts = {"a": [30, 31, 32], "b": [40, 41], "c": [50, 51, 52, 53, 54]}
    alone = {k: engine.generate([p], GREEDY)[0].token_ids for k, p in prompts.items()}
    got = {k: [] for k in prompts}
    engine.add_request(prompts["a"], GREEDY, request_id="a")
    for step in range(100):
        if step == 1:
            engine.add_request(prompts["b"], GREEDY, request_id="b")
        if step == 3:
            engine.add_request(prompts["c"], GREEDY, request_id="c")
        for out in engine.step():
            got[out.request_id] += out.new_token_ids
        if step > 3 and not engine.has_unfinished():
            break
    assert got == alone


def test_abort_frees_the_slot_and_stops_computing(tiny_qwen3):
    engine = Engine(tiny_qwen3, block_size=4, max_batch_size=1)
    engine.add_request([30, 31], SamplingParams(max_new_tokens=200, ignore_eos=True), request_id="long")
    engine.add_request([40, 41], GREEDY, request_id="queued")
    engine.step()
    assert engine.num_running == 1 and engine.num_waiting == 1
    assert engine.abort("long") and not engine.abort("long")
    outs = engine.step()
    assert [o.request_id for o in outs] == ["queued"]  # the aborted request produced nothing more
    while engine.has_unfinished():
        engine.step()
    assert engine.free_slots == [0]
    assert engine.abort("nonexistent") is False


def test_abort_a_waiting_request(tiny_qwen3):
    engine = Engine(tiny_qwen3, block_size=4, max_batch_size=1)
    engine.add_request([30], GREEDY, request_id="x")
    engine.add_request([31], GREEDY, request_id="y")
    assert engine.abort("y") and engine.num_waiting == 1


@pytest.mark.parametrize("prompt, params, message", [
    ([], GREEDY, "prompt is empty"),
    ([1, 999], GREEDY, r"token ids must be in \[0, 260\)"),
    ([1] * 500, SamplingParams(max_new_tokens=100), "exceeds the context length 512"),
])
def test_bad_requests_are_refused(tiny_qwen3, prompt, params, message):
    engine = Engine(tiny_qwen3, max_batch_size=1)
    with pytest.raises(ValueError, match=message):
        engine.add_request(prompt, params)
    assert not engine.has_unfinished()


def test_duplicate_request_id_is_refused(tiny_qwen3):
    engine = Engine(tiny_qwen3, max_batch_size=1)
    engine.add_request([1], GREEDY, request_id="same")
    with pytest.raises(ValueError, match="already in use"):
        engine.add_request([2], GREEDY, request_id="same")


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_new_tokens=-1), "max_new_tokens must be an integer >= 0"),
    (dict(temperature=-1), "temperature"),
    (dict(top_p=0.0), "top_p must be in"),
    (dict(top_k=-2), "top_k must be an integer >= 0"),
    (dict(seed="x"), "seed must be an integer"),
    (dict(stop_token_ids=(-1,)), "stop_token_ids"),
])
def test_bad_sampling_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_on_step_streams_every_token_once(tiny_qwen3):
    engine = Engine(tiny_qwen3, block_size=4, max_batch_size=2)
    streamed = {}
    results = engine.generate([[30, 31], [40]], GREEDY,
                              on_step=lambda o: streamed.setdefault(o.request_id, []).extend(o.new_token_ids))
    assert [streamed[r.request_id] for r in results] == [r.token_ids for r in results]
