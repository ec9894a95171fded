import pytest
import torch


@pytest.fixture
def one_thread():
    """Run small-tensor training loops on one intra-op thread (much faster on a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

