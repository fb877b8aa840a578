"""Test helpers: the ``../shared`` folder (reference tensors, audio) and parity helpers.

Where ``../shared`` is absent (a user's clone) the tests that need it skip with a reason;
under ``CI=true`` its absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(os.environ.get("SEMANTICODEC_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_path(*parts: str) -> Path:
    """A path under ``../shared``; skips the test (fails under CI=true) when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"{path} is missing: the shared reference data is not beside this clone"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


_NPZ_CACHE: dict[str, dict[str, np.ndarray]] = {}


def reference(name: str) -> dict[str, np.ndarray]:
    """All arrays of ``../shared/reference/<name>.npz`` (loaded once per session)."""
    if name not in _NPZ_CACHE:
        with np.load(shared_path("reference", f"{name}.npz")) as data:
            _NPZ_CACHE[name] = {key: data[key] for key in data.files}
    return _NPZ_CACHE[name]


def rel_l2(actual, expected) -> float:
    """Relative L2 error ||actual - expected|| / ||expected|| in float64."""
    a = np.asarray(torch.as_tensor(actual).detach().cpu().double())
    e = np.asarray(torch.as_tensor(expected).detach().cpu().double())
    assert a.shape == e.shape, f"shape {a.shape} != reference {e.shape}"
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-30))


PARITY_TOL = 1e-4
"""Relative L2 tolerance per stage for float32 parity with the official implementation."""


def assert_parity(actual, expected, name: str, tol: float = PARITY_TOL) -> float:
    """Assert rel. L2 error <= ``tol`` and return it (printed with ``pytest -s``)."""
    err = rel_l2(actual, expected)
    print(f"parity {name}: rel L2 = {err:.3e}")
    assert err <= tol, f"{name}: relative L2 error {err:.3e} > {tol:.0e}"
    return err
