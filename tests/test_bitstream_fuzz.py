"""Malformed input: arbitrary and mutated streams give a valid parse or BitstreamError, never
another exception, a hang or an allocation out of proportion to the input.

The corpus holds fixed-width (version 1) and entropy-coded (version 2) streams. The default
run checks every single-bit flip of a small stream of each kind and every truncation,
2000 hypothesis examples and 20 000 seeded mutations of valid streams (well under a minute);
``pytest -m slow`` runs 500 000 mutations and every double-bit flip.
"""

from __future__ import annotations

import io
import itertools
import struct
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toy_tables import structured_tokens, toy_tables

from semanticodec.bitstream import BitstreamError, Header, StreamReader, decode, encode, scan
from semanticodec.bitstream.header import FIXED_SIZE, MAGIC, crc16
from semanticodec.bitstream.packet import SYNC, packet_size

CORPUS_SPECS = [
    # token_rate, semantic_vocab_size, acoustic_vocab_size, packet_columns, pairs, metadata, entropy coded
    (100, 4096, 8192, 1, 43, {}, False),
    (50, 10000, 8192, 2, 37, {"title": "fuzz", "k": "v"}, False),
    (25, 3, 5, 1, 18, {}, False),
    (25, 32768, 8192, None, 300, {}, False),
    (100, 1 << 20, 1 << 20, 1, 9, {"a": "ü"}, False),
    (50, 4096, 8192, 1, 0, {}, False),
    (100, 64, 128, 2, 41, {}, True),
    (50, 64, 128, 3, 50, {"title": "coded"}, True),
    (25, 64, 128, None, 300, {}, True),
]
TABLES = {tables.table_id: tables for tables in (toy_tables(rate) for rate in (100, 50, 25))}
"""The entropy tables of the coded streams, by table id (``TABLES.get`` is the readers' lookup)."""


def build_corpus() -> list[tuple[Header, bytes]]:
    rng = np.random.default_rng(11)
    corpus = []
    for rate, vocab, acoustic, columns, pairs, metadata, coded in CORPUS_SPECS:
        header = Header(rate, vocab, acoustic, packet_columns=columns, metadata=metadata,
                        sample_count=pairs * 16000 * 2 // rate)
        if coded:
            data = encode(structured_tokens(rng, pairs, vocab, acoustic, rate), header, toy_tables(rate))
            assert data[4] == 2
            header = decode(data, tables=TABLES.get)[0]
        else:
            data = encode(np.stack([rng.integers(0, vocab, pairs), rng.integers(0, acoustic, pairs)], axis=1), header)
        corpus.append((header, data))
    return corpus


CORPUS = build_corpus()
EXAMPLE = CORPUS[0][1]
CODED_EXAMPLE = CORPUS[6][1]


def fixed_size(data: bytes) -> int:
    """Header bytes before the metadata: 45 in version 1, 53 in version 2."""
    return FIXED_SIZE + (8 if len(data) > 4 and data[4] == 2 else 0)


def header_size(data: bytes) -> int:
    return fixed_size(data) + int.from_bytes(data[fixed_size(data) - 2 : fixed_size(data)], "big") + 2


def fix_header_crc(data: bytearray) -> None:
    end = header_size(data) - 2
    if len(data) >= end + 2:
        data[end : end + 2] = struct.pack(">H", crc16(data[:end]))


def packet_length(data: bytes | bytearray, offset: int, header: Header) -> int | None:
    """Length of the packet at ``offset`` as its own fields say (None when they cannot be read)."""
    if offset + 6 > len(data):
        return None
    final = bool(data[offset + 2] & 0x80)
    pairs = int.from_bytes(data[offset + 4 : offset + 6], "big") if final else header.packet_pairs
    if pairs > header.packet_pairs:
        return None
    if header.version == 1 or not data[offset + 2] & 0x40:
        return packet_size(header, pairs, final)
    at = offset + (6 if final else 4)
    for _ in range(2):
        if at + 2 > len(data):
            return None
        length, width = (data[at], 1) if data[at] < 0x80 else (int.from_bytes(data[at : at + 2], "big") & 0x7FFF, 2)
        at += width + length
    return at + 2 - offset


def fix_packet_crcs(data: bytearray, header: Header) -> None:
    """Recompute the CRC of every packet whose sync marker sits where the writer put it."""
    offset = header.size
    while offset + 6 <= len(data) and data[offset : offset + 2] == SYNC:
        size = packet_length(data, offset, header)
        if size is None or offset + size > len(data):
            return
        data[offset + size - 2 : offset + size] = struct.pack(">H", crc16(bytes(data[offset + 2 : offset + size - 2])))
        offset += size


FIELDS = {  # offset, size of header fields (FORMAT.md §2)
    "version": (4, 1), "token_rate": (5, 1), "packet_columns": (6, 1), "semantic_vocab_size": (7, 4),
    "acoustic_vocab_size": (11, 4), "sample_rate": (31, 4), "sample_count": (35, 8), "metadata_length": (43, 2),
}
FIELDS_V2 = {**FIELDS, "table_id": (43, 8), "metadata_length": (51, 2)}


REWRITES = (6, 7, 8)
"""Mutation kinds that rewrite content and fix its checksum (the result can be valid)."""


def mutate(header: Header, data: bytes, rng: np.random.Generator) -> tuple[int, bytes]:
    """One random structural or bit-level mutation of a valid stream: (kind, bytes)."""
    out = bytearray(data)
    n = len(out)
    kind = int(rng.integers(0, 12))
    if kind == 0:
        for _ in range(rng.integers(1, 9)):
            out[rng.integers(0, n)] ^= 1 << rng.integers(0, 8)
    elif kind == 1:
        for _ in range(rng.integers(1, 4)):
            out[rng.integers(0, n)] = rng.integers(0, 256)
    elif kind == 2:
        del out[rng.integers(0, n) :]
    elif kind == 3:
        start = rng.integers(0, n)
        del out[start : start + rng.integers(1, 40)]
    elif kind == 4:
        junk = rng.integers(0, 256, rng.integers(1, 40)).astype(np.uint8).tobytes()
        if rng.random() < 0.5:
            junk = SYNC + junk
        at = rng.integers(0, n + 1)
        out[at:at] = junk
    elif kind == 5:
        start = rng.integers(0, n)
        chunk = out[start : start + rng.integers(1, 200)]
        at = rng.integers(0, n + 1)
        out[at:at] = chunk
    elif kind == 6:
        fields = FIELDS_V2 if header.version == 2 else FIELDS
        name = list(fields)[rng.integers(0, len(fields))]
        offset, size = fields[name]
        choices = [0, 1, (1 << (8 * size)) - 1, 1 << (8 * size - 1), int(rng.integers(0, 1 << min(62, 8 * size)))]
        out[offset : offset + size] = choices[rng.integers(0, len(choices))].to_bytes(size, "big")
        fix_header_crc(out)
    elif kind == 7:
        end = header_size(data) - 2
        for _ in range(rng.integers(1, 4)):
            out[rng.integers(fixed_size(data), end + 1) if end > fixed_size(data) else fixed_size(data) - 2] = rng.integers(0, 256)
        fix_header_crc(out)
    elif kind == 8:
        for _ in range(rng.integers(1, 6)):
            out[rng.integers(header_size(data), n)] = rng.integers(0, 256)
        fix_packet_crcs(out, header)
    elif kind == 9:
        out += rng.integers(0, 256, rng.integers(1, 30)).astype(np.uint8).tobytes()
    elif kind == 10:
        step = rng.integers(1, 120)
        a, b = sorted(rng.integers(header_size(data), max(header_size(data) + 1, n - step), 2))
        out[a : a + step], out[b : b + step] = data[b : b + step], data[a : a + step]
    else:
        out = bytearray(data[: rng.integers(0, 6)])
    return kind, bytes(out)


def must_parse_or_reject(data: bytes, original: tuple[Header, np.ndarray] | None = None) -> tuple[int, int]:
    """Strict decode, resilient read and scan: a result or BitstreamError, nothing else.

    With the ``original`` header and tokens of a mutated stream, also count the packets the
    resilient reader delivered and how many of them differ from the original tokens at
    their position: (wrong, delivered).
    """
    try:
        header, tokens = decode(data, tables=TABLES.get)
    except BitstreamError:
        pass
    else:
        # Fixed-width ids take their full width; a coded packet takes at least 8 bytes.
        limit = len(data) * 8 // (header.semantic_bits + header.acoustic_bits)
        if header.version == 2:
            limit = max(limit, len(data) // 8 * header.packet_pairs)
        assert tokens.shape[1] == 2 and len(tokens) <= limit
    wrong = delivered = 0
    try:
        reader = StreamReader(io.BytesIO(data), resilient=True, tables=TABLES.get)
        for packet in reader:
            delivered += 1
            if original is not None and reader.header == original[0]:
                expected = original[1][packet.start : packet.start + len(packet.semantic)]
                wrong += not np.array_equal(packet.tokens, expected)
    except BitstreamError:
        pass
    try:
        scan(io.BytesIO(data), TABLES.get)
    except BitstreamError:
        pass
    return wrong, delivered


ORIGINALS = [(header, decode(data, tables=TABLES.get)[1]) for header, data in CORPUS]


def run_mutations(cases: int, seed: int) -> tuple[int, int]:
    """Mutate corpus streams; returns (wrong, delivered) packets of the resilient reads of
    mutations that do not rewrite content."""
    rng = np.random.default_rng(seed)
    wrong = delivered = 0
    for _ in range(cases):
        index = rng.integers(0, len(CORPUS))
        kind, data = mutate(*CORPUS[index], rng)
        w, d = must_parse_or_reject(data, None if kind in REWRITES else ORIGINALS[index])
        wrong, delivered = wrong + w, delivered + d
    return wrong, delivered


@pytest.mark.parametrize("example", [EXAMPLE, CODED_EXAMPLE], ids=["fixed", "coded"])
def test_every_single_bit_flip_is_detected(example: bytes) -> None:
    for position in range(len(example) * 8):
        damaged = bytearray(example)
        damaged[position // 8] ^= 0x80 >> (position % 8)
        with pytest.raises(BitstreamError):
            decode(bytes(damaged), tables=TABLES.get)


def test_every_truncation_is_detected() -> None:
    for _, data in CORPUS:
        for end in range(len(data)):
            with pytest.raises(BitstreamError):
                decode(data[:end], tables=TABLES.get)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty stream"),
        (b"SC", "truncated header"),
        (b"RIFF....WAVE", "not an .scdc stream"),
        (MAGIC + b"\x03" + bytes(60), "unsupported format version 3"),
        (CODED_EXAMPLE[:52], "truncated header"),
        (EXAMPLE[:30], "truncated header"),
        (EXAMPLE[:-1], "truncated packet"),
        (EXAMPLE + b"\x00", "trailing data"),
    ],
)
def test_named_problems(data: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        decode(data, tables=TABLES.get)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("token_rate", 30, "token_rate must be one of"),
        ("packet_columns", 0, "packet_columns must be in"),
        ("semantic_vocab_size", 1, "semantic_vocab_size must be in"),
        ("acoustic_vocab_size", 1 << 21, "acoustic_vocab_size must be in"),
        ("sample_rate", 0, "sample_rate must be in"),
        ("sample_count", 1 << 63, "sample_count must be in"),
        ("sample_count", 1 << 40, "does not match 43 token pairs"),
    ],
)
def test_absurd_header_values_with_valid_checksum(field: str, value: int, message: str) -> None:
    data = bytearray(EXAMPLE)
    offset, size = FIELDS[field]
    data[offset : offset + size] = value.to_bytes(size, "big")
    fix_header_crc(data)
    with pytest.raises(BitstreamError, match=message):
        decode(bytes(data))


def test_invalid_metadata_with_valid_checksum() -> None:
    base = bytearray(CORPUS[1][1])
    start = FIXED_SIZE
    for block, message in [(b"title=\xff\xfe", "not UTF-8"), (b"no equals", "malformed metadata"),
                           (b"a=1\na=2", "duplicate metadata key"), (b"b d=1", "malformed metadata")]:
        length = int.from_bytes(base[43:45], "big")
        data = base[:43] + struct.pack(">H", len(block)) + block + bytes(2) + base[start + length + 2 :]
        fix_header_crc(data)
        with pytest.raises(BitstreamError, match=message):
            decode(bytes(data))


def test_final_packet_count_out_of_range() -> None:
    data = bytearray(EXAMPLE)
    final = data.rfind(SYNC + b"\x80")
    data[final + 4 : final + 6] = b"\xff\xff"
    with pytest.raises(BitstreamError, match="final packet claims 65535 pairs, must be fewer than 8"):
        decode(bytes(data))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda tail: MAGIC + tail),
    st.binary(max_size=300).map(lambda tail: EXAMPLE[: header_size(EXAMPLE)] + tail),
    st.binary(max_size=300).map(lambda tail: CORPUS[1][1][: header_size(CORPUS[1][1])] + tail),
    st.binary(max_size=300).map(lambda tail: CODED_EXAMPLE[: header_size(CODED_EXAMPLE)] + tail),
    st.binary(max_size=300).map(lambda tail: CODED_EXAMPLE[: header_size(CODED_EXAMPLE)] + SYNC + b"\x40\x00" + tail),
))
def test_arbitrary_bytes(data: bytes) -> None:
    must_parse_or_reject(data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.sampled_from([data for _, data in CORPUS]),
    position=st.floats(0, 1),
    insert=st.binary(max_size=64),
    delete=st.integers(0, 64),
)
def test_spliced_streams(source: bytes, position: float, insert: bytes, delete: int) -> None:
    at = int(position * len(source))
    must_parse_or_reject(source[:at] + insert + source[at + delete :])


def test_seeded_mutations() -> None:
    wrong, delivered = run_mutations(20_000, seed=0)
    assert delivered > 10_000 and wrong == 0


def peak_allocation(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
    except BitstreamError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_memory_stays_proportional_to_the_input() -> None:
    must_parse_or_reject(EXAMPLE)
    rng = np.random.default_rng(5)
    wide = Header(100, 1 << 20, 1 << 20, packet_columns=255).to_bytes()  # 10 kB packets
    claims_metadata = bytearray(wide)
    claims_metadata[43:45] = b"\xff\xff"
    fix_header_crc(claims_metadata)
    coded = CODED_EXAMPLE[: header_size(CODED_EXAMPLE)]
    cases = [wide + SYNC + bytes(12), wide + SYNC + b"\x80\x00\xff\xff", bytes(claims_metadata) + bytes(8),
             coded + SYNC + b"\x40\x00\xff\xff\xff\xff", coded + SYNC + b"\xc0\x00\x00\x05\xff\xff\xff\xff"]
    cases += [mutate(*CORPUS[rng.integers(0, len(CORPUS))], rng)[1] for _ in range(200)]
    for data in cases:
        for read in (lambda: decode(data, tables=TABLES.get),
                     lambda: list(StreamReader(io.BytesIO(data), resilient=True, tables=TABLES.get))):
            peak = peak_allocation(read)
            assert peak <= 64 * len(data) + 64 * 1024, f"peak {peak} bytes for a {len(data)}-byte input"


@pytest.mark.slow
def test_many_seeded_mutations() -> None:
    # A resynchronisation candidate made of junk passes the CRC-16 with probability 2**-16:
    # over this many damaged streams a handful of wrong packets can be delivered.
    wrong, delivered = run_mutations(500_000, seed=1)
    print(f"{wrong} wrong packets of {delivered} delivered")
    assert wrong <= 1e-4 * delivered


@pytest.mark.slow
@pytest.mark.parametrize("example", [EXAMPLE, CODED_EXAMPLE], ids=["fixed", "coded"])
def test_every_double_bit_flip_is_detected(example: bytes) -> None:
    bits = len(example) * 8
    for a, b in itertools.combinations(range(bits), 2):
        damaged = bytearray(example)
        damaged[a // 8] ^= 0x80 >> (a % 8)
        damaged[b // 8] ^= 0x80 >> (b % 8)
        with pytest.raises(BitstreamError):
            decode(bytes(damaged), tables=TABLES.get)
