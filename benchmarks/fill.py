"""Deterministic pseudo-random weights named by state-dict key.

The reference tensors of the official implementation (``../shared/reference``) were
made with every floating-point state-dict entry set to ``fill(key, shape)``: SplitMix64
over (crc32(key) << 32) + element index, mapped to ``u`` in [-1, 1). The value is

- ``u * sqrt(3 / fan_in)`` for tensors of two or more dimensions (fan_in = prod(shape[1:])),
- ``1 + 0.1 u`` for one-dimensional tensors whose key ends in ``weight``,
- ``0.02 u`` otherwise.

The same rule builds full-size models without checkpoints, for parity tests and timing.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable

import numba
import numpy as np
import torch

from semanticodec.jit import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(parallel=True)
def _uniform_kernel(seed: np.uint64, out: np.ndarray) -> None:
    for i in numba.prange(out.size):
        z = seed + np.uint64(i) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
        out[i] = np.float64(z >> np.uint64(11)) * (2.0 / 2.0**53) - 1.0


def uniform(name: str, n: int) -> np.ndarray:
    """``n`` float64 values in [-1, 1), a pure function of ``name``."""
    seed = np.uint64(zlib.crc32(name.encode("utf-8"))) << np.uint64(32)
    out = np.empty(n, dtype=np.float64)
    _uniform_kernel(seed, out)
    return out


def fill(name: str, shape: Iterable[int]) -> np.ndarray:
    """The deterministic float32 value of state-dict entry ``name`` with ``shape``."""
    shape = tuple(int(s) for s in shape)
    u = uniform(name, math.prod(shape))
    if len(shape) >= 2:
        v = u * np.sqrt(3.0 / math.prod(shape[1:]))
    elif len(shape) == 1 and name.endswith("weight"):
        v = 1.0 + 0.1 * u
    else:
        v = 0.02 * u
    return v.astype(np.float32).reshape(shape)


@torch.no_grad()
def fill_module(module: torch.nn.Module, prefix: str = "", skip: Iterable[str] = ()) -> None:
    """Set every floating-point entry of ``module.state_dict()`` to ``fill(prefix + key)``.

    ``skip`` lists keys (without ``prefix``) left untouched: fixed buffers such as the
    diffusion schedule or a sin-cos position table.
    """
    skipped = set(skip)
    for key, tensor in module.state_dict(keep_vars=True).items():
        if key in skipped or not tensor.is_floating_point():
            continue
        value = torch.from_numpy(fill(prefix + key, tensor.shape))
        tensor.data.copy_(value.to(tensor.dtype))
