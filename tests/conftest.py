import pytest
import torch

from orthrus_sglang.testing import write_tiny_checkpoint

# Tiny models: one thread is faster than two fighting each other on a 2-core CI machine,
# and it keeps fp32 reductions in one order.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-qwen3"), backbone="qwen3")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama"), backbone="llama", attention_bias=True,
                                 mlp_bias=True)
