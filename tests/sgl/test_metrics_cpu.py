"""The orthrus:* series (sgl/metrics.py) count per position and per block size what the steps accepted."""

from __future__ import annotations

from prometheus_client import REGISTRY

from orthrus_sglang.sgl.metrics import OrthrusMetrics


def value(name, **labels):
    return REGISTRY.get_sample_value(name, {"model_name": "m", **labels}) or 0.0


def test_series_count_positions_full_blocks_and_block_sizes():
    metrics = OrthrusMetrics(block_size=8, model_name="m")
    steps = [(8, [0, 7, 3, 3]), (4, [3, 0]), (1, [0, 0, 0]), (8, [7])]
    for block_size, accepted in steps:
        metrics.observe(accepted, block_size)
    every = [n for _, accepted in steps for n in accepted]
    assert value("orthrus:verify_steps_total") == len(every)
    for i in range(7):  # draft i+1 accepted by the requests with n > i
        assert value("orthrus:accepted_position_total", position=str(i + 1)) == sum(n > i for n in every)
    # a full block is B-1 accepted drafts at the step's own B: two at B=8, one at B=4, three at B=1
    assert value("orthrus:full_block_accept_total") == 2 + 1 + 3
    assert value("orthrus:accept_drafts_sum") == sum(every) and value("orthrus:accept_drafts_count") == len(every)
    for block_size in (8, 4, 1):
        ran = [accepted for b, accepted in steps if b == block_size]
        assert value("orthrus:steps_by_block_size_total", block_size=str(block_size)) == sum(map(len, ran))
        assert value("orthrus:tokens_by_block_size_total", block_size=str(block_size)) == sum(
            n + 1 for accepted in ran for n in accepted)
