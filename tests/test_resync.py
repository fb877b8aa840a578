"""Resynchronisation scans all candidates of a buffer at once (bitstream.resync, issue 14 item 9):
the vectorised check agrees with the rule of FORMAT.md §5.3 applied one candidate at a time,
and a resilient reader finds the packets behind long runs of sync-like junk."""

from __future__ import annotations

import io

import numpy as np
import pytest
from toy_tables import TOY_MODEL, structured_tokens, toy_tables

from semanticodec.bitstream import Header, StreamReader, encode
from semanticodec.bitstream.header import crc16
from semanticodec.bitstream.packet import CODED_FLAG, SYNC, packet_size, seq_modulus
from semanticodec.bitstream.resync import next_candidate


def _length(data: bytes, at: int) -> tuple[int, int] | None:
    """A coded layer length at ``at``: (length, bytes it takes), None when ``data`` ends first, (-1, 0) when malformed."""
    if at + 1 > len(data):
        return None
    if data[at] < 0x80:
        return data[at], 1
    if at + 2 > len(data):
        return None
    length = int.from_bytes(data[at : at + 2], "big") & 0x7FFF
    return (length, 2) if length >= 0x80 else (-1, 0)


def _reference(data: bytes, header: Header, expected: int) -> int:
    """FORMAT.md §5.3, one candidate at a time (undecided when the packet runs past ``data``)."""
    modulus = seq_modulus(header)
    for pos in range(len(data) - 1):
        if data[pos : pos + 2] != SYNC:
            continue
        if pos + 4 > len(data):
            return pos
        flags = int.from_bytes(data[pos + 2 : pos + 4], "big")
        final, seq = bool(flags & 0x8000), flags & (modulus - 1)
        coded = header.version == 2 and bool(flags & CODED_FLAG)
        if (seq - expected) % modulus >= modulus // 2:
            continue
        pairs, start = header.packet_pairs, 4
        if final:
            if pos + 6 > len(data):
                return pos
            pairs, start = int.from_bytes(data[pos + 4 : pos + 6], "big"), 6
            if pairs >= header.packet_pairs:
                continue
        size = packet_size(header, pairs, final)
        if coded:
            lengths = []
            for _ in range(2):
                field = _length(data, pos + start)
                if field is None:
                    return pos
                lengths.append(field[0])
                start += field[1]
            if -1 in lengths or start + sum(lengths) + 2 >= size:
                continue
            size = start + sum(lengths) + 2
        if pos + size > len(data):
            return pos
        if crc16(data[pos + 2 : pos + size - 2]) == int.from_bytes(data[pos + size - 2 : pos + size], "big"):
            return pos
    return -1


@pytest.mark.parametrize("coded", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_vectorised_scan_follows_the_rule(seed: int, coded: bool) -> None:
    rng = np.random.default_rng(seed)
    if coded:  # entropy-coded packets (version 2): variable sizes, layer lengths after the count
        tables = toy_tables()
        header = Header(100, 64, 128, model_id=TOY_MODEL, packet_columns=int(rng.integers(1, 4)))
        tokens = structured_tokens(rng, 200, 64, 128)
        stream = encode(tokens, header, tables)
        header = StreamReader(io.BytesIO(stream), tables=tables).header
        assert header.version == 2
    else:
        header = Header(100, int(rng.choice([100, 4096, 16384])), packet_columns=int(rng.integers(1, 4)))
        tokens = np.stack([rng.integers(0, header.semantic_vocab_size, 200), rng.integers(0, header.acoustic_vocab_size, 200)], 1)
        stream = encode(tokens, header)
    packets = stream[header.size :]
    junk = bytearray(rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes())
    for at in rng.integers(0, max(1, len(junk) - 1), len(junk) // 3):
        junk[at : at + 2] = SYNC  # dense sync markers with random flags and counts
    if coded:  # and markers with the coded flag and plausible lengths
        for at in rng.integers(0, max(1, len(junk) - 6), len(junk) // 6):
            junk[at : at + 4] = SYNC + bytes([0x40 | int(rng.integers(0, 2)) << 7, int(rng.integers(0, 256))])
    cut = int(rng.integers(0, len(packets)))
    data = bytes(junk) + packets[cut:]
    expected = int(rng.integers(0, 40))
    for start in (0, int(rng.integers(0, len(data) + 1))):
        view = data[start:]
        assert next_candidate(view, header, expected) == _reference(view, header, expected)


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
