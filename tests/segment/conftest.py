"""Shared fixtures of the segmentation tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP spinning makes 2 threads slower."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
