"""Vectorised bit packing: known vectors, agreement with np.packbits and a per-value packer, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semanticodec.bitstream import pack_bits, packed_size, unpack_bits


def reference_pack(values: np.ndarray, bits: int, order: str) -> bytes:
    """Slow but obviously right: one row of bits per value, then np.packbits."""
    shifts = np.arange(bits - 1, -1, -1) if order == "big" else np.arange(bits)
    matrix = ((values.astype(np.int64)[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(matrix.ravel(), bitorder=order).tobytes()


def per_value_pack(values: list[int], bits: int) -> bytes:
    """LSB-first packer pushing one value at a time, as Encodec's BitPacker does."""
    out = bytearray()
    acc = nacc = 0
    for value in values:
        acc |= value << nacc
        nacc += bits
        while nacc >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nacc -= 8
    if nacc:
        out.append(acc)
    return bytes(out)


def test_known_vectors() -> None:
    assert pack_bits([0xABC, 0xDEF], 12) == bytes.fromhex("abcdef")
    assert pack_bits([0xABC, 0xDEF], 12, "little") == bytes.fromhex("bcfade")
    assert pack_bits([1, 0, 1], 1) == bytes([0b10100000])
    assert pack_bits([1, 0, 1], 1, "little") == bytes([0b00000101])
    assert pack_bits([0x1FFF], 13) == bytes.fromhex("fff8")
    assert pack_bits([], 7) == b""
    assert unpack_bits(bytes.fromhex("abcdef"), 12, 2).tolist() == [0xABC, 0xDEF]


@pytest.mark.parametrize("order", ["big", "little"])
@pytest.mark.parametrize("bits", range(1, 25))
def test_every_width_matches_reference(bits: int, order: str) -> None:
    rng = np.random.default_rng(bits)
    for count in (0, 1, 7, 8, 9, 1001):
        values = rng.integers(0, 1 << bits, count)
        values[: min(count, 2)] = [(1 << bits) - 1, 0][: min(count, 2)]
        packed = pack_bits(values, bits, order)
        assert len(packed) == packed_size(count, bits)
        assert packed == reference_pack(values, bits, order)
        unpacked = unpack_bits(packed, bits, count, order)
        assert unpacked.dtype == np.int64
        np.testing.assert_array_equal(unpacked, values)


@pytest.mark.parametrize("bits", [1, 5, 12, 13, 14, 15, 20, 24])
def test_little_endian_matches_per_value_packer(bits: int) -> None:
    values = np.random.default_rng(0).integers(0, 1 << bits, 777)
    assert pack_bits(values, bits, "little") == per_value_pack(values.tolist(), bits)


@settings(max_examples=200, deadline=None)
@given(
    bits=st.integers(1, 24),
    order=st.sampled_from(["big", "little"]),
    data=st.data(),
)
def test_round_trip_property(bits: int, order: str, data: st.DataObject) -> None:
    values = data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=300))
    packed = pack_bits(np.array(values, dtype=np.int64), bits, order)
    assert packed == reference_pack(np.array(values, dtype=np.int64), bits, order)
    assert unpack_bits(packed + b"\xff", bits, len(values), order).tolist() == values


def test_accepts_every_integer_dtype_and_buffers() -> None:
    for dtype in (np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.uint64):
        assert pack_bits(np.array([3, 1], dtype=dtype), 2) == bytes([0b11010000])
    assert unpack_bits(bytearray(b"\xd0"), 2, 2).tolist() == [3, 1]
    assert unpack_bits(memoryview(b"\x00\xd0")[1:], 2, 2).tolist() == [3, 1]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pack_bits([1], 0), "bit width"),
        (lambda: pack_bits([1], 25), "bit width"),
        (lambda: pack_bits([4], 2), r"\[0, 4\)"),
        (lambda: pack_bits([-1], 8), r"\[0, 256\)"),
        (lambda: pack_bits([[1]], 8), "one-dimensional"),
        (lambda: pack_bits([1.5], 8), "integers"),
        (lambda: pack_bits([1], 8, "middle"), "bit order"),
        (lambda: unpack_bits(b"\x00", 12, 1), "need 2 bytes"),
        (lambda: unpack_bits(b"\x00", 8, -1), "non-negative"),
        (lambda: unpack_bits(b"\x00", 30, 0), "bit width"),
    ],
)
def test_bad_arguments_raise_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
