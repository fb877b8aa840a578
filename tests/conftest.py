"""Pytest configuration: thread count and the ``shared_dir`` fixture (helpers in ``parity.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity import shared_path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_path()
