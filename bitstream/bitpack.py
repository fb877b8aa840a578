"""Vectorised fixed-width bit packing (numba kernels, one pass, no per-value Python).

``pack_bits`` writes each value in exactly ``bits`` bits, back to back, and pads the last
byte with zero bits. Two bit orders:

- ``"big"`` (MSB-first, the .scdc order): the first value occupies the most significant
  bits of the first byte, and each value is written most significant bit first. Values
  ``0xABC, 0xDEF`` at 12 bits give bytes ``AB CD EF``.
- ``"little"`` (LSB-first, the order of Encodec's ``BitPacker``): the first value occupies
  the least significant bits of the first byte, each value least significant bit first.
  Values ``0xABC, 0xDEF`` at 12 bits give bytes ``BC FA DE``.
"""

from __future__ import annotations

from typing import Literal

import numba
import numpy as np
from numpy.typing import ArrayLike

MAX_BITS = 24
"""Widest supported value, in bits."""

BitOrder = Literal["big", "little"]


def _jit(function):  # noqa: ANN001, ANN202
    """``numba.njit(nogil=True)`` with numba's on-disk cache, or without it where numba finds no
    writable place for one (no writable HOME or package folder): compiled once per process then."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)


@_jit
def _pack_big(values: np.ndarray, bits: int, out: np.ndarray) -> None:
    acc = 0
    nacc = 0
    j = 0
    for i in range(values.size):
        acc = (acc << bits) | values[i]
        nacc += bits
        while nacc >= 8:
            nacc -= 8
            out[j] = (acc >> nacc) & 0xFF
            j += 1
        acc &= (1 << nacc) - 1
    if nacc > 0:
        out[j] = (acc << (8 - nacc)) & 0xFF


@_jit
def _pack_little(values: np.ndarray, bits: int, out: np.ndarray) -> None:
    acc = 0
    nacc = 0
    j = 0
    for i in range(values.size):
        acc |= values[i] << nacc
        nacc += bits
        while nacc >= 8:
            out[j] = acc & 0xFF
            acc >>= 8
            nacc -= 8
            j += 1
    if nacc > 0:
        out[j] = acc & 0xFF


@_jit
def _unpack_big(data: np.ndarray, bits: int, out: np.ndarray) -> None:
    mask = (1 << bits) - 1
    acc = 0
    nacc = 0
    j = 0
    for i in range(out.size):
        while nacc < bits:
            acc = (acc << 8) | np.int64(data[j])
            j += 1
            nacc += 8
        nacc -= bits
        out[i] = (acc >> nacc) & mask
        acc &= (1 << nacc) - 1


@_jit
def _unpack_little(data: np.ndarray, bits: int, out: np.ndarray) -> None:
    mask = (1 << bits) - 1
    acc = 0
    nacc = 0
    j = 0
    for i in range(out.size):
        while nacc < bits:
            acc |= np.int64(data[j]) << nacc
            j += 1
            nacc += 8
        out[i] = acc & mask
        acc >>= bits
        nacc -= bits


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by ``count`` values of ``bits`` bits: ceil(count * bits / 8)."""
    return (count * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bit width must be in 1..{MAX_BITS}, got {bits}")


def _check_order(order: str) -> None:
    if order not in ("big", "little"):
        raise ValueError(f"bit order must be 'big' or 'little', got {order!r}")


def pack_bits(values: ArrayLike, bits: int, order: BitOrder = "big") -> bytes:
    """Pack a 1-D array of integers in [0, 2**bits) into ceil(n * bits / 8) bytes."""
    _check_bits(bits)
    _check_order(order)
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"values must be integers, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= 1 << bits):
        raise ValueError(f"values must lie in [0, {1 << bits}) for {bits}-bit packing")
    out = np.zeros(packed_size(array.size, bits), dtype=np.uint8)
    kernel = _pack_big if order == "big" else _pack_little
    kernel(np.ascontiguousarray(array, dtype=np.int64), bits, out)
    return out.tobytes()


def unpack_bits(data: bytes | bytearray | memoryview, bits: int, count: int, order: BitOrder = "big") -> np.ndarray:
    """Read ``count`` values of ``bits`` bits from the start of ``data``: int64 array ``[count]``.

    ``data`` must hold at least ceil(count * bits / 8) bytes; bytes after that are ignored.
    """
    _check_bits(bits)
    _check_order(order)
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    needed = packed_size(count, bits)
    if len(data) < needed:
        raise ValueError(f"{count} values of {bits} bits need {needed} bytes, got {len(data)}")
    raw = np.frombuffer(data, dtype=np.uint8, count=needed)
    out = np.empty(count, dtype=np.int64)
    kernel = _unpack_big if order == "big" else _unpack_little
    kernel(raw, bits, out)
    return out
