"""One short training run on a tiny random plain Llama, shared by the tests that inspect its result."""

from __future__ import annotations

import pytest

from orthrus_sglang.testing import write_tiny_plain_llama
from orthrus_sglang.train.config import TrainConfig

MASK_TOKEN_ID = 259  # <|mask|> of the byte tokenizer
BLOCK = 8


def tiny_train_config(model, out, **overrides) -> TrainConfig:
    """Small enough for CPU tests: 256-token rows, 8-token blocks, short answers, few eval prompts."""
    values = dict(model=str(model), out=str(out), mask_token_id=MASK_TOKEN_ID, block_size=BLOCK, num_prompts=192,
                  gen_max_new_tokens=64, gen_batch_size=64, num_eval_prompts=4, eval_max_new_tokens=16,
                  row_len=256, rows_per_micro=4, lr=3e-3, warmup_steps=10, max_steps=250, progress=False)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def plain_llama(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain-llama")
    write_tiny_plain_llama(path)
    return path


@pytest.fixture(scope="session")
def trained(plain_llama, tmp_path_factory):
    """(config, results) of 250 steps from the plain checkpoint (converted and distilled by train itself)."""
    from orthrus_sglang.train.loop import train

    cfg = tiny_train_config(plain_llama, tmp_path_factory.mktemp("trained"))
    results = train(cfg)
    assert results["finished"]
    return cfg, results
