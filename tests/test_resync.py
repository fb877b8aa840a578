"""Resynchronisation scans all candidates of a buffer at once (bitstream.resync, issue 14 item 9):
the vectorised check agrees with the rule of FORMAT.md §5.3 applied one candidate at a time,
and a resilient reader finds the packets behind long runs of sync-like junk."""

from __future__ import annotations

import io

import numpy as np
import pytest

from semanticodec.bitstream import Header, StreamReader, encode
from semanticodec.bitstream.header import crc16
from semanticodec.bitstream.resync import next_candidate
from semanticodec.bitstream.stream import MAX_SEQ_GAP, SYNC, packet_size


def _reference(data: bytes, header: Header, expected: int) -> int:
    """FORMAT.md §5.3, one candidate at a time (undecided when the packet runs past ``data``)."""
    for pos in range(len(data) - 1):
        if data[pos : pos + 2] != SYNC:
            continue
        if pos + 4 > len(data):
            return pos
        flags = int.from_bytes(data[pos + 2 : pos + 4], "big")
        final, seq = bool(flags & 0x8000), flags & 0x7FFF
        if (seq - expected) % 0x8000 >= MAX_SEQ_GAP:
            continue
        pairs = header.packet_pairs
        if final:
            if pos + 6 > len(data):
                return pos
            pairs = int.from_bytes(data[pos + 4 : pos + 6], "big")
            if pairs >= header.packet_pairs:
                continue
        size = packet_size(header, pairs, final)
        if pos + size > len(data):
            return pos
        if crc16(data[pos + 2 : pos + size - 2]) == int.from_bytes(data[pos + size - 2 : pos + size], "big"):
            return pos
    return -1


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_scan_follows_the_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    header = Header(100, int(rng.choice([100, 4096, 16384])), packet_columns=int(rng.integers(1, 4)))
    tokens = np.stack([rng.integers(0, header.semantic_vocab, 200), rng.integers(0, header.acoustic_vocab, 200)], 1)
    packets = encode(tokens, header)[header.size :]
    junk = bytearray(rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes())
    for at in rng.integers(0, max(1, len(junk) - 1), len(junk) // 3):
        junk[at : at + 2] = SYNC  # dense sync markers with random flags and counts
    cut = int(rng.integers(0, len(packets)))
    data = bytes(junk) + packets[cut:]
    expected = int(rng.integers(0, 40))
    for start in (0, int(rng.integers(0, len(data) + 1))):
        view = data[start:]
        assert next_candidate(view, header, expected, MAX_SEQ_GAP) == _reference(view, header, expected)


@pytest.mark.parametrize("pattern", ["d3c30000", "d3c3", "d3c3800000", "d3c30001d3c3"])
def test_packets_behind_sync_like_junk_are_found(pattern: str) -> None:
    header = Header(100, 16384)
    rng = np.random.default_rng(1)
    tokens = np.stack([rng.integers(0, 16384, 700), rng.integers(0, 8192, 700)], 1)
    stream = encode(tokens, header)
    first = header.size + packet_size(header, header.packet_pairs, False)
    junk = bytes.fromhex(pattern) * (300_000 // len(bytes.fromhex(pattern)))
    reader = StreamReader(io.BytesIO(stream[:first] + junk + stream[first:]), resilient=True)
    got = np.concatenate([p.tokens for p in reader])
    np.testing.assert_array_equal(got, tokens)
    assert len(reader.damage) == 1 and reader.damage[0].lost_packets == 0
