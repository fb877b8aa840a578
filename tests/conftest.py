"""Pytest configuration: thread count and the ``shared_dir`` fixture (helpers in ``parity.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from parity import shared_path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture
def one_thread():
    """One torch thread (two contend badly on a busy two-core machine); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
