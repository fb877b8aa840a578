"""Vectorised fixed-width bit packing (numpy, no per-value Python).

``pack_bits`` writes each value in exactly ``bits`` bits, back to back, and pads the last
byte with zero bits. Two bit orders:

- ``"big"`` (MSB-first, the .scdc order): the first value occupies the most significant
  bits of the first byte, and each value is written most significant bit first. Values
  ``0xABC, 0xDEF`` at 12 bits give bytes ``AB CD EF``.
- ``"little"`` (LSB-first, the order of Encodec's ``BitPacker``): the first value occupies
  the least significant bits of the first byte, each value least significant bit first.
  Values ``0xABC, 0xDEF`` at 12 bits give bytes ``BC FA DE``.

Values are handled in groups of ``g = 8 / gcd(bits, 8)`` that fill ``g * bits / 8`` whole
bytes; within a group every (value, byte) overlap is one shift of a whole column of groups,
so the work is a few numpy operations per overlap, whatever the number of values.
"""

from __future__ import annotations

from functools import cache
from math import gcd
from typing import Literal, overload

import numpy as np
from numpy.typing import ArrayLike

MAX_BITS = 24
"""Widest supported value, in bits."""

BitOrder = Literal["big", "little"]


@cache
def _layout(bits: int, order: BitOrder) -> tuple[int, int, tuple[tuple[int, int, int], ...]]:
    """``(values per group, bytes per group, overlaps)``; an overlap ``(i, j, shift)`` says that
    value ``i`` of a group shifted left by ``shift`` (right by ``-shift``) gives its bits in
    byte ``j`` of the group (before masking to 8 bits)."""
    group = 8 // gcd(bits, 8)
    overlaps = []
    for i in range(group):
        first, end = i * bits, (i + 1) * bits
        for j in range(first // 8, (end - 1) // 8 + 1):
            shift = 8 * (j + 1) - end if order == "big" else first - 8 * j
            overlaps.append((i, j, shift))
    return group, group * bits // 8, tuple(overlaps)


def _shift(column: np.ndarray, shift: int) -> np.ndarray:
    return column << shift if shift >= 0 else column >> -shift


@overload
def packed_size(count: int, bits: int) -> int: ...


@overload
def packed_size(count: np.ndarray, bits: int) -> np.ndarray: ...


def packed_size(count: int | np.ndarray, bits: int) -> int | np.ndarray:
    """Bytes taken by ``count`` values of ``bits`` bits: ceil(count * bits / 8) (element-wise
    for an integer array of counts)."""
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
    group, width, overlaps = _layout(bits, order)
    rows = -(-array.size // group)
    values = np.zeros((rows, group), dtype=np.uint32)
    values.reshape(-1)[: array.size] = array
    columns = values.T.copy()  # columns[i]: value i of every group, contiguous
    out = np.zeros((width, rows), dtype=np.uint32)
    for i, j, shift in overlaps:
        out[j] |= _shift(columns[i], shift)
    return out.T.astype(np.uint8).reshape(-1)[: packed_size(array.size, bits)].tobytes()


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
    group, width, overlaps = _layout(bits, order)
    rows = -(-count // group)
    raw = np.zeros((rows, width), dtype=np.uint8)
    raw.reshape(-1)[:needed] = np.frombuffer(data, dtype=np.uint8, count=needed)
    columns = raw.T.astype(np.uint32)  # columns[j]: byte j of every group, contiguous
    values = np.zeros((group, rows), dtype=np.uint32)
    for i, j, shift in overlaps:
        values[i] |= _shift(columns[j], -shift)
    values &= (1 << bits) - 1
    return values.T.reshape(-1)[:count].astype(np.int64)
