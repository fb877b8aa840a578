"""Entropy-coded .scdc streams (format version 2): the range coder and its model, tables and
their ids, the worked example of FORMAT.md §6.2, packets that never grow, and resilient
reading of damaged coded streams."""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import replace

import numpy as np
import pytest
from toy_tables import TOY_MODEL, structured_tokens, toy_tables

from semanticodec.bitstream import (
    BitstreamError,
    EntropyTables,
    Header,
    StreamReader,
    StreamWriter,
    decode,
    encode,
    learn_tables,
    packet_offsets,
    scan,
)
from semanticodec.bitstream.entropy import BOTTOM, TOP
from semanticodec.bitstream.header import crc16
from semanticodec.bitstream.tables import LayerModel, SparseContext


def _u(values, dtype=np.uint32) -> np.ndarray:
    return np.array(values, dtype)


def _context(kind: str, weight: int, half: int, context_vocab: int, entries: dict[int, list[tuple[int, int]]]) -> SparseContext:
    offsets, symbols, counts = [0], [], []
    for c in range(context_vocab):
        for symbol, count in entries.get(c, []):
            symbols.append(symbol)
            counts.append(count)
        offsets.append(len(symbols))
    return SparseContext(kind, weight, half, _u(offsets), _u(symbols, np.uint16), _u(counts, np.uint16))


# The tables and stream of FORMAT.md §6.2.
EXAMPLE_TABLES = EntropyTables(
    100, 16, 16, bytes(range(16)),
    LayerModel(_u([[8, 4, 2, 2] + [1] * 12]), 4096, 0, 0,
               (_context("previous_column", 8192, 1, 16, {3: [(3, 9), (5, 1)], 0: [(0, 4)]}),)),
    LayerModel(_u([[16] + [1] * 15]), 1024, 2048, 4, (_context("semantic", 16384, 1, 16, {s: [(s, 3)] for s in range(4)}),)),
)
EXAMPLE_HEADER = Header(100, 16, 16, model_id=bytes(range(16)), sample_count=5760, packet_columns=1)
EXAMPLE_TOKENS = np.array([
    [3, 3], [3, 3], [0, 0], [1, 1], [0, 0], [0, 0], [2, 2], [3, 3],
    [3, 3], [3, 3], [0, 0], [1, 0], [0, 0], [0, 0], [2, 2], [5, 3],
    [3, 3], [0, 0],
])
EXAMPLE_BYTES = bytes.fromhex(
    "534344430264010000001000000010000102030405060708090a0b0c0d0e0f00003e80000000000000168002ae38b17e2177790000"
    "1826"
    "d3c34000030188e5023d31f9"
    "d3c34001040188e503311d3024"
    "d3c3800200023030c315"
)


def test_example_bytes_are_the_documented_layout() -> None:
    assert EXAMPLE_TABLES.table_id.hex() == "02ae38b17e217779"
    assert encode(EXAMPLE_TOKENS, EXAMPLE_HEADER, EXAMPLE_TABLES) == EXAMPLE_BYTES
    header, tokens = decode(EXAMPLE_BYTES, tables=EXAMPLE_TABLES)
    assert header == replace(EXAMPLE_HEADER, table_id=EXAMPLE_TABLES.table_id) and header.version == 2
    np.testing.assert_array_equal(tokens, EXAMPLE_TOKENS)


# A decoder written from FORMAT.md §3 and §8 alone --------------------------------------------


def spec_table_id(arrays: dict[str, np.ndarray]) -> bytes:
    digest = hashlib.sha256()
    for name in sorted(arrays, key=lambda n: n.encode()):
        value = np.ascontiguousarray(arrays[name])
        little = value.astype(value.dtype.newbyteorder("<"))
        shape = "[" + ", ".join(str(d) for d in value.shape) + "]"
        digest.update(f"{name}:{little.dtype.str}:{shape};".encode() + little.tobytes())
    return digest.digest()[:8]


def spec_cum_function(arrays: dict, layer: str, ids: list[int], semantic: list[int], i: int, ppc: int):
    """cum(s) of FORMAT.md §8.2 at position i, as a Python function, and the total."""
    base = arrays[f"entropy.{layer}.base"].astype(int)
    vocab = base.shape[1]
    row = base[i % ppc if base.shape[0] > 1 else 0]
    w0, wl, hl = (int(v) for v in arrays[f"entropy.{layer}.weights"])
    kinds = ("previous_column", "previous_band") if layer == "semantic" else ("previous_column", "semantic", "previous_band")
    parts = []  # (entries as {id: count}, N, T)
    for kind in kinds:
        key = f"entropy.{layer}.{kind}"
        if f"{key}.weights" not in arrays:
            continue
        c = None
        if kind == "previous_column" and i >= ppc:
            c = ids[i - ppc]
        elif kind == "previous_band" and i % ppc > 0:
            c = ids[i - 1]
        elif kind == "semantic":
            c = semantic[i]
        if c is None:
            continue
        offsets = arrays[f"{key}.offsets"]
        entries = dict(zip(arrays[f"{key}.symbols"][offsets[c] : offsets[c + 1]].tolist(),
                           arrays[f"{key}.counts"][offsets[c] : offsets[c + 1]].tolist()))
        n = sum(entries.values())
        w, h = (int(v) for v in arrays[f"{key}.weights"])
        t = w * n // (n + h) if n else 0
        if t:
            parts.append((entries, n, t))
    tl = wl * i // (i + hl) if i and wl else 0

    def cum(s: int) -> int:
        value = s + int(row[:s].sum()) * w0 // int(row.sum())
        for entries, n, t in parts:
            value += sum(count for x, count in entries.items() if x < s) * t // n
        if tl:
            value += sum(1 for x in ids[:i] if x < s) * tl // i
        return value

    return cum, vocab


def spec_decode_layer(data: bytes, n: int, arrays: dict, layer: str, semantic: list[int], ppc: int) -> list[int]:
    if data and data[-1] == 0:
        raise ValueError("trailing zero")
    stream = iter(data)
    code = 0
    for _ in range(6):
        code = code * 256 + next(stream, 0)
    rng = TOP - 1
    ids: list[int] = []
    for i in range(n):
        cum, vocab = spec_cum_function(arrays, layer, ids, semantic, i, ppc)
        total = cum(vocab)
        r = rng // total
        t = code // r
        if t >= total:
            raise ValueError("corrupt")
        s = max(x for x in range(vocab) if cum(x) <= t)
        code -= r * cum(s)
        rng = r * (cum(s + 1) - cum(s))
        while rng < BOTTOM:
            code = code * 256 + next(stream, 0)
            rng *= 256
        ids.append(s)
    return ids


def spec_decode(data: bytes, tables: EntropyTables) -> list[tuple[int, int]]:
    """Header fields by offset, coded packets by §3 and §8; fixed-width packets are skipped."""
    assert data[4] == 2 and data[43:51] == spec_table_id(tables.to_arrays())
    arrays = tables.to_arrays()
    ppc = {100: 8, 50: 4, 25: 4}[data[5]]
    bits = [(int.from_bytes(data[7:11], "big") - 1).bit_length(), (int.from_bytes(data[11:15], "big") - 1).bit_length()]
    packet_pairs = data[6] * ppc
    offset = 55 + int.from_bytes(data[51:53], "big")
    pairs = []
    while offset < len(data):
        flags = int.from_bytes(data[offset + 2 : offset + 4], "big")
        final, coded = flags & 0x8000, flags & 0x4000
        n = int.from_bytes(data[offset + 4 : offset + 6], "big") if final else packet_pairs
        at = offset + (6 if final else 4)
        if not coded:
            size = at + sum(-(-n * b // 8) for b in bits) + 2 - offset
            offset += size
            pairs += [None] * n
            continue
        lengths = []
        for _ in range(2):
            first = data[at]
            lengths.append(first if first < 0x80 else int.from_bytes(data[at : at + 2], "big") & 0x7FFF)
            at += 1 if first < 0x80 else 2
        semantic_layer = data[at : at + lengths[0]]
        acoustic_layer = data[at + lengths[0] : at + sum(lengths)]
        assert crc16(data[offset + 2 : at + sum(lengths)]) == int.from_bytes(data[at + sum(lengths) : at + sum(lengths) + 2], "big")
        semantic = spec_decode_layer(semantic_layer, n, arrays, "semantic", [], ppc)
        acoustic = spec_decode_layer(acoustic_layer, n, arrays, "acoustic", semantic, ppc)
        pairs += list(zip(semantic, acoustic))
        offset = at + sum(lengths) + 2
    return pairs


@pytest.mark.parametrize("token_rate", [100, 25])
def test_a_decoder_written_from_the_spec_agrees(token_rate: int) -> None:
    tables = toy_tables(token_rate)
    assert spec_table_id(tables.to_arrays()) == tables.table_id
    tokens = structured_tokens(np.random.default_rng(3), 150, 64, 128, token_rate)
    header = Header(token_rate, 64, 128, packet_columns=4)
    data = encode(tokens, header, tables)
    decoded = spec_decode(data, tables)
    assert sum(p is not None for p in decoded) > len(tokens) // 2
    for row, pair in zip(tokens.tolist(), decoded):
        assert pair is None or list(pair) == row
    assert spec_decode(EXAMPLE_BYTES, EXAMPLE_TABLES)[:16] == [tuple(r) for r in EXAMPLE_TOKENS[:16].tolist()]


# Round trips, sizes, fallback ---------------------------------------------------------------


@pytest.mark.parametrize("token_rate", [100, 50, 25])
@pytest.mark.parametrize("packet_columns", [1, 3, None])
def test_round_trip_and_smaller_than_fixed_width(token_rate: int, packet_columns: int | None) -> None:
    tables = toy_tables(token_rate)
    tokens = structured_tokens(np.random.default_rng(token_rate), 700, 64, 128, token_rate)
    header = Header(token_rate, 64, 128, model_id=TOY_MODEL, packet_columns=packet_columns,
                    sample_count=700 * 2 * 16000 // token_rate)
    data = encode(tokens, header, tables)
    fixed = encode(tokens, header)
    read, back = decode(data, tables=tables)
    np.testing.assert_array_equal(back, tokens)
    assert read.version == 2 and read.table_id == tables.table_id and fixed[4] == 1
    # One-column packets have no previous column and little to adapt to.
    assert len(data) < (0.97 if packet_columns == 1 else 0.85) * len(fixed)
    _, semantic = decode(data, layers="semantic", tables=tables)
    np.testing.assert_array_equal(semantic, tokens[:, 0])
    info = scan(io.BytesIO(data), tables)
    assert info.ok and info.coded_packets > 0 and info.tables is tables
    assert info.overhead < scan(io.BytesIO(fixed)).overhead


def test_incompressible_tokens_never_grow() -> None:
    tables = toy_tables()
    rng = np.random.default_rng(1)
    tokens = np.stack([rng.integers(0, 64, 777), rng.integers(0, 128, 777)], axis=1)
    header = Header(100, 64, 128, packet_columns=2)
    assert encode(tokens, header, tables) == encode(tokens, header)  # nothing coded: version 1
    buffer = io.BytesIO()
    with StreamWriter(buffer, header, tables) as writer:  # no packet is coded: version 1, as without tables
        writer.write(tokens)
    assert writer.coded_packets == 0 and writer.header.version == 1 and buffer.getvalue() == encode(tokens, header)
    buffer = io.BytesIO()
    with StreamWriter(buffer, replace(header, table_id=tables.table_id), tables) as writer:  # named: version 2
        writer.write(tokens)
    assert writer.coded_packets == 0 and len(buffer.getvalue()) == len(encode(tokens, header)) + 8
    np.testing.assert_array_equal(decode(buffer.getvalue(), tables=tables)[1], tokens)


def _streamed(writes: list[np.ndarray], header: Header, tables: EntropyTables) -> tuple[bytes, StreamWriter, list[bytes]]:
    """The stream of ``writes`` (token chunks) through one StreamWriter, the writer, and the bytes
    that each write and then ``close`` emitted."""
    buffer = io.BytesIO()
    writer = StreamWriter(buffer, header, tables)
    emitted = []
    for chunk in writes:
        writer.write(chunk)
        emitted.append(buffer.getvalue()[sum(map(len, emitted)) :])
    writer.close()
    emitted.append(buffer.getvalue()[sum(map(len, emitted)) :])
    return buffer.getvalue(), writer, emitted


def test_streaming_writer_names_the_tables_only_when_a_packet_of_its_first_write_is_coded() -> None:
    tables = toy_tables()
    rng = np.random.default_rng(5)
    structured = structured_tokens(rng, 32, 64, 128)  # two coded packets of 16 pairs
    random = np.stack([rng.integers(0, 64, 16), rng.integers(0, 128, 16)], axis=1)  # one fixed-width packet
    header = Header(100, 64, 128, packet_columns=2)
    named = replace(header, table_id=tables.table_id)
    cases = (  # token chunks written, whether the stream names the tables
        ([structured, random], True),
        ([np.concatenate([random, structured])], True),  # decided on every packet of the first write
        ([random, structured], False),  # the first write completes one packet, not coded
        ([random[:15], random[15:], structured], False),
        ([random[:15], np.concatenate([random[15:], structured])], True),
        ([structured[:15]], True),  # no full packet: the final packet decides at close
        ([random[:10]], False),
        ([], False),
    )
    for writes, names in cases:
        data, writer, emitted = _streamed(writes, header, tables)
        tokens = np.concatenate(writes) if writes else np.zeros((0, 2), np.int64)
        first = next(i for i, part in enumerate(emitted) if part)
        assert first == next((i for i, w in enumerate(writes) if sum(map(len, writes[: i + 1])) >= 16), len(writes))
        assert writer.header == (named if names else header) and (writer.tables is tables) == names
        assert data.startswith(writer.header.to_bytes()) and (writer.coded_packets > 0) == names
        if names:  # what a writer given a header that names the tables writes
            assert data == _streamed(writes, named, tables)[0]
            assert scan(io.BytesIO(data), tables).coded_packets == writer.coded_packets
        else:  # what a writer without tables writes
            assert data == encode(tokens, header)
        np.testing.assert_array_equal(decode(data, tables=tables)[1], tokens)


def test_packets_are_coded_one_by_one() -> None:
    tables = toy_tables()
    rng = np.random.default_rng(2)
    random = np.stack([rng.integers(0, 64, 48), rng.integers(0, 128, 48)], axis=1)
    tokens = np.concatenate([structured_tokens(rng, 48, 64, 128), random, structured_tokens(rng, 53, 64, 128)])
    header = Header(100, 64, 128, packet_columns=2)
    packets = list(StreamReader(io.BytesIO(encode(tokens, header, tables)), tables=tables))
    coded = [p.coded for p in packets]
    assert any(coded) and not all(coded[3:6]) and all(p.coded is False for p in packets if len(p.semantic) == 0)
    np.testing.assert_array_equal(np.concatenate([p.tokens for p in packets]), tokens)


def test_tables_must_be_the_named_ones() -> None:
    tables = toy_tables()
    tokens = structured_tokens(np.random.default_rng(4), 200, 64, 128)
    header = Header(100, 64, 128)
    data = encode(tokens, header, tables)
    with pytest.raises(BitstreamError, match=f"entropy coded with tables {tables.table_id.hex()}, which are not available"):
        decode(data)
    with pytest.raises(BitstreamError, match="which are not available"):
        decode(data, tables=lambda table_id: None)
    other = toy_tables(100, 64, 128, bytes(16))
    with pytest.raises(BitstreamError, match="the tables given are"):
        decode(data, tables=other)
    np.testing.assert_array_equal(decode(data, tables={tables.table_id: tables}.get)[1], tokens)
    with pytest.raises(ValueError, match="cannot code a 100 tok/s, 64 \\+ 8192 stream"):
        encode(tokens, Header(100, 64), tables)
    with pytest.raises(ValueError, match="pass them as tables"):
        encode(tokens, replace(header, table_id=b"12345678"))
    with pytest.raises(ValueError, match="the header names entropy tables"):
        encode(tokens, replace(header, table_id=b"12345678"), tables)
    zero = bytearray(data)
    zero[43:51] = bytes(8)
    zero[53:55] = struct.pack(">H", crc16(bytes(zero[:53])))
    with pytest.raises(BitstreamError, match="must name entropy tables"):
        decode(bytes(zero), tables=tables)


# Tables -------------------------------------------------------------------------------------


def test_table_arrays_round_trip_and_name_the_tables() -> None:
    tables = toy_tables()
    again = EntropyTables.from_arrays(tables.to_arrays())
    assert again.table_id == tables.table_id and again.contexts == tables.contexts
    arrays = tables.to_arrays()
    arrays["entropy.semantic.base"] = arrays["entropy.semantic.base"].copy()
    arrays["entropy.semantic.base"][0, 0] += 1
    assert EntropyTables.from_arrays(arrays).table_id != tables.table_id


@pytest.mark.parametrize(
    ("key", "change", "message"),
    [
        ("entropy.info", lambda a: a * 0 + 2, "unsupported layout"),
        ("entropy.semantic.weights", lambda a: a * 0 + (1 << 23), "weights add up to"),
        ("entropy.semantic.base", lambda a: a[:, :10], "base counts must be unsigned"),
        ("entropy.acoustic.semantic.symbols", lambda a: a[::-1].copy(), "strictly ascending"),
        ("entropy.acoustic.semantic.counts", lambda a: a * 0, "counts in 1 .. 65535"),
        ("entropy.acoustic.semantic.counts", lambda a: a.astype(np.uint32) + 70000, "counts in 1 .. 65535"),
        ("entropy.acoustic.previous_band.offsets", lambda a: a[:-1], "offsets must be ascending"),
        ("entropy.model_id", lambda a: a[:3], "16 bytes"),
        ("entropy.semantic.base", lambda a: a.astype(np.float32), "must be integers"),
    ],
)
def test_malformed_tables_are_refused(key: str, change, message: str) -> None:
    arrays = toy_tables().to_arrays()
    arrays[key] = change(arrays[key])
    with pytest.raises(ValueError, match=message):
        EntropyTables.from_arrays(arrays)
    del arrays[key]
    with pytest.raises(ValueError, match="missing array|must hold|weights"):
        EntropyTables.from_arrays(arrays)


def test_contexts_can_be_switched_off() -> None:
    rng = np.random.default_rng(8)
    files = [structured_tokens(rng, 300, 64, 128) for _ in range(5)]
    sizes = {}
    test = structured_tokens(rng, 1000, 64, 128)
    for contexts in [(), ("band",), ("band", "previous_column"), ("band", "previous_column", "semantic", "local")]:
        tables = learn_tables(files, 100, 64, 128, TOY_MODEL, contexts)
        assert tables.contexts == contexts
        sizes[contexts] = len(encode(test, Header(100, 64, 128), tables))
    assert sizes[("band", "previous_column")] < sizes[("band",)]
    assert sizes[("band", "previous_column", "semantic", "local")] < sizes[("band", "previous_column")]
    with pytest.raises(ValueError, match="unknown contexts"):
        learn_tables(files, 100, 64, 128, TOY_MODEL, ("neighbour",))
    with pytest.raises(ValueError, match="outside the vocabularies"):
        learn_tables(files, 100, 32, 128, TOY_MODEL)


# Resilient reading of coded streams ---------------------------------------------------------


@pytest.fixture(scope="module")
def coded_stream() -> tuple[Header, np.ndarray, bytes, list[int], EntropyTables]:
    tables = toy_tables(50)
    tokens = structured_tokens(np.random.default_rng(7), 8 * 6 + 5, 64, 128, 50)
    data = encode(tokens, Header(50, 64, 128, packet_columns=2), tables)
    header = decode(data, tables=tables)[0]
    offsets = packet_offsets(data, tables)[:-1]
    assert len(offsets) == 7 and all(data[o + 2] & 0x40 for o in offsets[:-1])
    return header, tokens, data, offsets, tables


def read_packets(data: bytes, tables: EntropyTables) -> tuple[StreamReader, dict[int, np.ndarray]]:
    reader = StreamReader(io.BytesIO(data), resilient=True, tables=tables)
    return reader, {p.index: p.tokens for p in reader}


def test_flipped_bit_loses_exactly_one_coded_packet(coded_stream) -> None:
    header, tokens, data, offsets, tables = coded_stream
    for k in range(len(offsets) - 1):
        for where in range(offsets[k + 1] - offsets[k]):
            damaged = bytearray(data)
            damaged[offsets[k] + where] ^= 0x04
            with pytest.raises(BitstreamError, match=f"packet {k} at byte {offsets[k]}"):
                decode(bytes(damaged), tables=tables)
            reader, packets = read_packets(bytes(damaged), tables)
            assert sorted(packets) == [i for i in range(len(offsets)) if i != k]
            for index, got in packets.items():
                np.testing.assert_array_equal(got, tokens[8 * index : 8 * index + len(got)])
            assert [(d.first_packet, d.lost_packets) for d in reader.damage] == [(k, 1)]


def test_coded_streams_resynchronise_and_report_truncation(coded_stream) -> None:
    header, tokens, data, offsets, tables = coded_stream
    cut = data[: offsets[2] + 5] + data[offsets[2] + 7 :]
    reader, packets = read_packets(cut, tables)
    assert sorted(packets) == [0, 1, 3, 4, 5, 6] and [(d.first_packet, d.lost_packets) for d in reader.damage] == [(2, 1)]
    junk = data[: offsets[3]] + b"\xd3\xc3\x40junk" + data[offsets[3] :]
    reader, packets = read_packets(junk, tables)
    assert sorted(packets) == list(range(7)) and [d.lost_packets for d in reader.damage] == [0]
    for end in (offsets[4] + 1, offsets[4] + 5, len(data) - 1):
        with pytest.raises(BitstreamError, match="truncated|stream ends"):
            decode(data[:end], tables=tables)
        reader, packets = read_packets(data[:end], tables)
        assert sorted(packets) == [i for i in range(6) if offsets[i + 1] <= end] and not reader.complete


def test_valid_checksum_but_undecodable_layer_loses_that_packet(coded_stream) -> None:
    header, tokens, data, offsets, tables = coded_stream
    start, end = offsets[1], offsets[2]
    packet = bytearray(data[start:end])
    lengths = packet[4], packet[5]
    packet[6 + lengths[0] - 1] = 0  # the semantic layer now ends with a zero byte
    forged = data[:start] + packet[:-2] + struct.pack(">H", crc16(bytes(packet[2:-2]))) + data[end:]
    with pytest.raises(BitstreamError, match="packet 1 .* semantic layer ends with a zero byte"):
        decode(forged, tables=tables)
    reader, packets = read_packets(forged, tables)
    assert 1 not in packets and [(d.first_packet, d.lost_packets) for d in reader.damage] == [(1, 1)]
    # Six FF bytes make the first value reach the total: no id has it.
    body = data[start + 2 : start + 4] + b"\x06\x00" + b"\xff" * 6
    forged = data[:start] + b"\xd3\xc3" + body + struct.pack(">H", crc16(body)) + data[end:]
    with pytest.raises(BitstreamError, match="semantic layer does not decode under the stream's entropy tables"):
        decode(forged, tables=tables)
    reader, packets = read_packets(forged, tables)
    assert 1 not in packets and [(d.first_packet, d.lost_packets) for d in reader.damage] == [(1, 1)]
    grown = bytearray(data[start:end])
    grown[4] = 0x7F  # a semantic layer claimed longer than the fixed-width packet
    with pytest.raises(BitstreamError, match="not smaller than its fixed-width form"):
        decode(data[:start] + bytes(grown) + data[end:], tables=tables)
