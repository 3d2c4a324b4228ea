"""The orthrus:* series (sgl/metrics.py) count per position and per block size what the steps accepted."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from orthrus_sglang.sgl.metrics import OrthrusMetrics


def value(name, **labels):
    return REGISTRY.get_sample_value(name, {"model_name": "m", **labels}) or 0.0


STEPS = [(8, [0, 7, 3, 3]), (4, [3, 0]), (1, [0, 0, 0]), (8, [7])]  # (block size, accepted drafts per request)


@pytest.fixture(scope="module")
def observed():
    """The series after STEPS (prometheus_client's default registry: created once per process)."""
    metrics = OrthrusMetrics(block_size=8, model_name="m")
    for block_size, accepted in STEPS:
        metrics.observe(accepted, block_size)
    return STEPS


def test_series_count_positions_full_blocks_and_block_sizes(observed):
    steps = observed
    every = [n for _, accepted in steps for n in accepted]
    assert value("orthrus:verify_steps_total") == len(every)
    for i in range(7):  # draft i+1 accepted by the requests with n > i
        assert value("orthrus:accepted_position_total", position=str(i + 1)) == sum(n > i for n in every)
        reached = sum(n >= i and i < b - 1 for b, accepted in steps for n in accepted)
        assert value("orthrus:reached_position_total", position=str(i + 1)) == reached
    # a full block is B-1 accepted drafts at the step's own B: two at B=8, one at B=4, three at B=1
    assert value("orthrus:full_block_accept_total") == 2 + 1 + 3
    assert value("orthrus:accept_drafts_sum") == sum(every) and value("orthrus:accept_drafts_count") == len(every)
    for block_size in (8, 4, 1):
        ran = [accepted for b, accepted in steps if b == block_size]
        assert value("orthrus:steps_by_block_size_total", block_size=str(block_size)) == sum(map(len, ran))
        assert value("orthrus:tokens_by_block_size_total", block_size=str(block_size)) == sum(
            n + 1 for accepted in ran for n in accepted)


def test_the_gateway_reads_the_block_sizes_back(observed):
    """server/backends/sglang.py turns the series into the snapshot the gateway's /metrics and live page show."""
    from prometheus_client import generate_latest

    from server.backends.sglang import block_policy_from_metrics

    assert block_policy_from_metrics("") is None
    policy = block_policy_from_metrics(generate_latest(REGISTRY).decode())
    assert policy["candidates"] == [1, 4, 8] and policy["adaptive"]
    assert policy["steps_by_block_size"] == {1: 3, 4: 2, 8: 5}
    assert policy["tau_by_block_size"][8] == (1 + 8 + 4 + 4 + 8) / 5
    every = [(8, n) for n in [0, 7, 3, 3, 7]] + [(4, 3), (4, 0)]
    first = sum(n >= 1 for _, n in every) / len(every)
    assert policy["acceptance_by_position"][0] == round(first, 4) and len(policy["acceptance_by_position"]) == 7


def test_accept_drafts_histogram_buckets(observed):
    """Bucket le=k+0.5 counts the requests that accepted at most k drafts (what Histogram.observe gives)."""
    every = [min(n, b - 1) for b, accepted in observed for n in accepted]
    for k in range(8):
        assert value("orthrus:accept_drafts_bucket", le=f"{k + 0.5}") == sum(n <= k for n in every)
    assert value("orthrus:accept_drafts_bucket", le="+Inf") == len(every)


BATCHED_VS_OBSERVE = r"""
import json, random, sys
from prometheus_client import CollectorRegistry, Histogram
from orthrus_sglang.sgl.metrics import _observe_counts

rng = random.Random(0)
steps = [[rng.randint(0, 15) for _ in range(rng.randint(1, 40))] for _ in range(50)]
registry = CollectorRegistry()
buckets = [n + 0.5 for n in range(16)]
one_by_one = Histogram("one_by_one", "h", buckets=buckets, registry=registry)
batched = Histogram("batched", "h", buckets=buckets, registry=registry)
for accepted in steps:
    for n in accepted:
        one_by_one.observe(n)
    counts = [accepted.count(n) for n in range(16)]
    _observe_counts(batched, counts, sum(accepted))
if len(sys.argv) > 1:  # multiprocess mode: read back what the shared files hold, as SGLang's /metrics does
    from prometheus_client import multiprocess
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=sys.argv[1])
samples = {}
for metric in registry.collect():
    for s in metric.samples:
        if s.name.endswith(("_bucket", "_sum", "_count")):
            samples.setdefault(metric.name, {})[s.name[len(metric.name):] + json.dumps(s.labels, sort_keys=True)] = s.value
print(json.dumps(samples))
"""


@pytest.mark.parametrize("multiprocess", [False, True], ids=["in-process", "multiprocess"])
def test_batched_histogram_writes_equal_observe(tmp_path, multiprocess):
    """_observe_counts reaches into prometheus_client's Histogram (its _sum and _buckets): the series it
    writes equal Histogram.observe's one by one, in memory and in the multiprocess files SGLang's
    --enable-metrics uses (the value class is chosen at import, hence a fresh interpreter)."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    args = [sys.executable, "-c", BATCHED_VS_OBSERVE]
    if multiprocess:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
        args.append(str(tmp_path))
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=True)
    samples = json.loads(out.stdout)
    assert samples["one_by_one"] == samples["batched"]
    assert len(samples["batched"]) == 16 + 1 + 2  # every bucket, +Inf, _sum, _count
