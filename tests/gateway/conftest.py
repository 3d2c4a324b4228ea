import pytest
import torch
from gateway_helpers import LiveServer, settings

from orthrus_sglang.testing import write_tiny_checkpoint

torch.set_num_threads(1)  # tiny model on a 2-core machine: one thread is faster and deterministic

BLOCK_SIZE = 4


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A tiny random Orthrus checkpoint (2 layers, byte tokenizer with a chat template, 512 context)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("gateway-tiny"), block_size=BLOCK_SIZE)


@pytest.fixture(scope="session")
def gateway(tiny_ckpt):
    """One embedded-backend gateway shared by the tests that do not need their own settings."""
    with LiveServer(settings(tiny_ckpt, max_batch_size=16)) as server:
        yield server
