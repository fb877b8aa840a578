"""Vectorised search for the next packet during resynchronisation (FORMAT.md §5.3).

After damage a resilient reader scans for the next ``D3 C3`` whose packet passes its count,
sequence and CRC checks. Checking candidates one by one costs a packet's CRC per candidate,
so bytes full of sync markers (hostile or unlucky) were scanned at well under 1 MB/s.
:func:`next_candidate` checks every candidate of a buffer at once with numpy: the CRC of
any byte range follows from the CRC registers at its two ends (CRC-16 is linear), and the
registers at all even offsets are computed blockwise, 16 bits per step, across blocks.
"""

from __future__ import annotations

import binascii
import math

import numpy as np

from semanticodec.bitstream.header import CRC_SIZE, Header
from semanticodec.bitstream.packet import CODED_FLAG, FINAL_FLAG, SYNC, packet_size, seq_modulus


def _byte_table() -> np.ndarray:
    """The register after the byte v read from a zero register (the usual byte-wise table), uint32."""
    return np.array([binascii.crc_hqx(bytes([v]), 0) for v in range(256)], np.uint32)


def _word_table(t8: np.ndarray) -> np.ndarray:
    """The register after the 2-byte word v (high byte first) read from a zero register, uint16."""
    words = np.arange(1 << 16, dtype=np.uint32)
    first = t8[words >> 8]
    return (((first << 8) & 0xFFFF) ^ t8[(first >> 8) ^ (words & 0xFF)]).astype(np.uint16)


def _shift_tables(t8: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) ``[levels, 256]``: a register v read over 2^k zero bytes becomes
    ``low[k][v & 0xFF] ^ high[k][v >> 8]`` (the map is linear)."""
    values = np.arange(256, dtype=np.uint32)
    low, high = np.empty((levels, 256), np.uint32), np.empty((levels, 256), np.uint32)
    low[0] = ((values << 8) & 0xFFFF) ^ t8[0]
    high[0] = t8[values]  # (v << 8) shifted out entirely: only the table term remains
    for k in range(1, levels):
        for table in (low, high):
            previous = table[k - 1]
            table[k] = low[k - 1][previous & 0xFF] ^ high[k - 1][previous >> 8]
    return low, high


_T8 = _byte_table()
_T16 = _word_table(_T8)
_SHIFT_LOW, _SHIFT_HIGH = _shift_tables(_T8, 15)  # up to 2^15 - 1 bytes: any packet (at most 10 206)


def even_registers(data: np.ndarray) -> np.ndarray:
    """CRC registers (zero initial value) after ``data[:2q]`` for q = 0 .. ceil(len / 2): uint16.

    The words are cut into B blocks of m words; each block's start register comes from
    ``binascii.crc_hqx`` over the blocks before it, then all blocks advance together one word
    per numpy step (register' = T16[register ^ word], valid for a 16-bit register).
    """
    padded = np.concatenate([data, np.zeros(len(data) % 2, np.uint8)])
    words = (padded[0::2].astype(np.uint32) << 8) | padded[1::2]
    count = len(words)
    m = max(1, math.isqrt(count))
    blocks = -(-count // m)
    flat = np.zeros(blocks * m, np.uint32)
    flat[:count] = words
    grid = flat.reshape(blocks, m)
    raw = padded.tobytes()
    starts = np.zeros(blocks, np.uint32)
    register = 0
    for b in range(1, blocks):
        register = binascii.crc_hqx(raw[2 * m * (b - 1) : 2 * m * b], register)
        starts[b] = register
    out = np.empty((blocks, m), np.uint16)
    register_vec = starts
    for j in range(m):
        register_vec = _T16[register_vec ^ grid[:, j]].astype(np.uint32)
        out[:, j] = register_vec
    return np.concatenate([np.zeros(1, np.uint16), out.reshape(-1)[:count]])


def _registers_at(data: np.ndarray, even: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Registers after ``data[:k]`` for each k of ``positions`` (odd k: one byte after k - 1)."""
    base = even[positions // 2].astype(np.uint32)
    odd = positions % 2 == 1
    if odd.any():
        byte = data[np.minimum(positions - 1, len(data) - 1)].astype(np.uint32)
        stepped = ((base << 8) & 0xFFFF) ^ _T8[(base >> 8) ^ byte]
        base = np.where(odd, stepped, base)
    return base


def _zero_shift(registers: np.ndarray, lengths: np.ndarray, common: int) -> np.ndarray:
    """Registers read over ``lengths`` zero bytes each (v -> v * x^(8n) mod P): one table pair for
    the ``common`` length (full packets), one per bit of n for the others."""
    out = registers.astype(np.uint32)
    same = lengths == common
    low, high = np.arange(256, dtype=np.uint32), np.arange(256, dtype=np.uint32) << 8
    for k in range(common.bit_length()):
        if common >> k & 1:
            low, high = (_SHIFT_LOW[k][t & 0xFF] ^ _SHIFT_HIGH[k][t >> 8] for t in (low, high))
    out[same] = low[out[same] & 0xFF] ^ high[out[same] >> 8]
    rest = np.flatnonzero(~same)
    if rest.size:
        part, part_lengths = out[rest], lengths[rest]
        for k in range(int(part_lengths.max()).bit_length()):
            use = (part_lengths >> k) & 1 == 1
            part = np.where(use, _SHIFT_LOW[k][part & 0xFF] ^ _SHIFT_HIGH[k][part >> 8], part)
        out[rest] = part
    return out


def next_candidate(data: bytes | bytearray | memoryview, header: Header, expected: int) -> int:
    """Offset of the first sync marker in ``data`` whose packet is not ruled out by ``data``, or -1.

    A candidate is ruled out when its final packet's count is not below ``packet_pairs``, its
    sequence number lies half the sequence modulus or more after ``expected`` (the reader's
    limit, :func:`~semanticodec.bitstream.packet.seq_modulus`), an entropy-coded packet's
    layer lengths are malformed or make it no smaller than its fixed-width form, or its whole
    packet is in ``data`` and fails the CRC. A candidate whose packet runs past the end of
    ``data`` is returned (the caller reads on to decide). A returned candidate therefore fails,
    if at all, only on what the reader checks after the CRC (ids, padding, the range decoder).
    """
    buf = np.frombuffer(data, np.uint8)
    n = len(buf)
    if n < 2:
        return -1
    pos = np.flatnonzero((buf[:-1] == SYNC[0]) & (buf[1:] == SYNC[1]))
    if not pos.size:
        return -1

    def byte(offset: int | np.ndarray) -> np.ndarray:
        return buf[np.minimum(pos + offset, n - 1)].astype(np.int64)

    modulus = seq_modulus(header)
    flags = byte(2) << 8 | byte(3)
    have4, have6 = pos + 4 <= n, pos + 6 <= n
    final = flags & FINAL_FLAG != 0
    coded = (flags & CODED_FLAG != 0) if header.version == 2 else np.zeros(len(pos), bool)
    seq_bad = have4 & ((flags % modulus - expected) % modulus >= modulus // 2)
    pairs = np.where(final, byte(4) << 8 | byte(5), header.packet_pairs)
    count_bad = final & have6 & (pairs >= header.packet_pairs)
    known = have4 & (~final | have6) & ~seq_bad & ~count_bad
    size = packet_size(header, pairs, final)
    bad = seq_bad | count_bad
    if coded.any():
        offset = 4 + 2 * final.astype(np.int64)
        total = np.zeros(len(pos), np.int64)
        for _ in range(2):  # two layer lengths: one byte below 128, else two with the top bit set
            first = byte(offset)
            wide = first >= 0x80
            length = np.where(wide, ((first & 0x7F) << 8) | byte(offset + 1), first)
            known &= ~coded | (pos + offset + 1 + wide <= n)
            bad |= coded & wide & (pos + offset + 2 <= n) & (length < 0x80)
            total += length
            offset = offset + 1 + wide
        coded_size = offset + total + CRC_SIZE
        bad |= coded & known & (coded_size >= size)
        size = np.where(coded, coded_size, size)
    complete = known & ~bad & (pos + size <= n)
    if complete.any():
        where = np.flatnonzero(complete)
        start, end = pos[where] + 2, pos[where] + size[where] - 2
        even = even_registers(buf[: int(end.max()) + 1])
        full = packet_size(header, header.packet_pairs, False) - 4
        crc = _registers_at(buf, even, end) ^ _zero_shift(_registers_at(buf, even, start) ^ 0xFFFF, end - start, full)
        stored = buf[end].astype(np.uint32) << 8 | buf[end + 1]
        bad[where] |= crc != stored
    alive = np.flatnonzero(~bad)
    return int(pos[alive[0]]) if alive.size else -1
