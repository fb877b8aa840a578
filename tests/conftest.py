"""Pytest configuration: the ``shared_dir`` fixture (helpers in ``parity.py``), and every test offline
with an empty Hugging Face cache of its own (tests never reach the network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from parity import shared_path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture(autouse=True)
def _offline_hub(tmp_path_factory, monkeypatch) -> None:
    """``HF_HUB_OFFLINE=1``, an empty ``HF_HOME`` and no ``SEMANTICODEC_CHECKPOINT`` for every test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    for name in ("HF_HUB_CACHE", "HF_ENDPOINT", "SEMANTICODEC_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def one_thread():
    """One torch thread (two contend badly on a busy two-core machine); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
