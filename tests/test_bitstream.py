"""The .scdc container: round trips, the exact byte layout, overhead, streaming over pipes and
sockets, resilient reading of damaged streams, header validation."""

from __future__ import annotations

import io
import math
import os
import socket
import struct
import threading

import numpy as np
import pytest

from parity import reference
from semanticodec.bitstream import (
    BitstreamError,
    Damage,
    Header,
    StreamReader,
    StreamWriter,
    decode,
    encode,
    read_file,
    scan,
    write_file,
)
from semanticodec.bitstream.header import crc16
from semanticodec.bitstream.packet import packet_size

OFFICIAL_VOCABS = (4096, 8192, 16384, 32768)


def random_tokens(rng: np.random.Generator, pairs: int, semantic_vocab_size: int, acoustic_vocab_size: int = 8192) -> np.ndarray:
    ids = np.stack([rng.integers(0, semantic_vocab_size, pairs), rng.integers(0, acoustic_vocab_size, pairs)], axis=1)
    ids[: min(pairs, 1)] = [semantic_vocab_size - 1, acoustic_vocab_size - 1]
    return ids


def packet_offsets(data: bytes, header: Header, pairs: int) -> list[int]:
    """Byte offset of every packet of a stream written by StreamWriter."""
    full = pairs // header.packet_pairs
    step = packet_size(header, header.packet_pairs, False)
    return [header.size + i * step for i in range(full + 1)]


def with_crc(packet: bytes) -> bytes:
    """A packet (sync marker included) with its CRC recomputed."""
    body = packet[2:-2]
    return packet[:2] + body + struct.pack(">H", crc16(body))


# The worked example of FORMAT.md §6: 10 pairs at 100 tok/s, packet_columns = 1 (8 pairs).
EXAMPLE_HEADER = Header(100, 4096, model_id=bytes(range(16)), sample_count=3200, packet_columns=1,
                        metadata={"title": "demo"})
EXAMPLE_TOKENS = np.stack([(409 * np.arange(10)) % 4096, (37 * np.arange(10) + 5) % 8192], axis=1)
EXAMPLE_BYTES = bytes.fromhex(
    "534344430164010000100000002000000102030405060708090a0b0c0d0e0f00003e800000000000000c80000a"
    "7469746c653d64656d6fc504"
    "d3c300000001993324cb6647fd996b2f00280a809e07404c82f81c6108fdfb"
    "d3c380010002cc8e6109685480ec78"
)


def test_example_bytes_are_the_documented_layout() -> None:
    assert encode(EXAMPLE_TOKENS, EXAMPLE_HEADER) == EXAMPLE_BYTES
    header, tokens = decode(EXAMPLE_BYTES)
    assert header == EXAMPLE_HEADER
    np.testing.assert_array_equal(tokens, EXAMPLE_TOKENS)
    assert crc16(b"123456789") == 0x29B1


def spec_decode(data: bytes) -> tuple[dict, list[tuple[int, int]]]:
    """A decoder written from FORMAT.md alone (bitwise CRC, bit accumulator) to check the spec."""

    def crc(block: bytes) -> int:
        value = 0xFFFF
        for byte in block:
            value ^= byte << 8
            for _ in range(8):
                value = ((value << 1) ^ 0x1021) & 0xFFFF if value & 0x8000 else (value << 1) & 0xFFFF
        return value

    def ids(start: int, count: int, bits: int) -> list[int]:
        acc = nacc = 0
        out = []
        for _ in range(count):
            while nacc < bits:
                acc, start, nacc = (acc << 8) | data[start], start + 1, nacc + 8
            nacc -= bits
            out.append(acc >> nacc)
            acc &= (1 << nacc) - 1
        return out

    assert data[:5] == b"SCDC\x01"
    rate, columns = data[5], data[6]
    semantic_vocab_size, acoustic_vocab_size = struct.unpack(">II", data[7:15])
    sample_rate, sample_count, meta_length = struct.unpack(">IQH", data[31:45])
    assert crc(data[: 45 + meta_length]) == int.from_bytes(data[45 + meta_length : 47 + meta_length], "big")
    fields = {"token_rate": rate, "semantic_vocab_size": semantic_vocab_size, "acoustic_vocab_size": acoustic_vocab_size,
              "model_id": data[15:31], "sample_rate": sample_rate, "sample_count": sample_count,
              "metadata": data[45 : 45 + meta_length].decode("utf-8")}
    semantic_bits, acoustic_bits = (semantic_vocab_size - 1).bit_length(), (acoustic_vocab_size - 1).bit_length()
    full = columns * (8 if rate == 100 else 4)
    position, seq, pairs = 47 + meta_length, 0, []
    while True:
        assert data[position : position + 2] == b"\xd3\xc3"
        flags = int.from_bytes(data[position + 2 : position + 4], "big")
        final = flags >> 15
        assert flags & 0x7FFF == seq % 32768
        n = int.from_bytes(data[position + 4 : position + 6], "big") if final else full
        body = position + (6 if final else 4)
        semantic_size = (n * semantic_bits + 7) // 8
        end = body + semantic_size + (n * acoustic_bits + 7) // 8
        assert crc(data[position + 2 : end]) == int.from_bytes(data[end : end + 2], "big")
        pairs += zip(ids(body, n, semantic_bits), ids(body + semantic_size, n, acoustic_bits))
        position, seq = end + 2, seq + 1
        if final:
            break
    assert position == len(data)
    return fields, pairs


@pytest.mark.parametrize("token_rate", [25, 50, 100])
def test_a_decoder_written_from_the_spec_agrees(token_rate: int) -> None:
    rng = np.random.default_rng(token_rate)
    cases = [(4096, 8192, None, 700), (5, 1 << 20, 3, 77), (32768, 2, 1, 4)]
    for semantic_vocab_size, acoustic_vocab_size, columns, pairs in cases:
        header = Header(token_rate, semantic_vocab_size, acoustic_vocab_size, model_id=rng.bytes(16), packet_columns=columns,
                        sample_rate=22050, metadata={"k": "v", "name": "ü=1"})
        tokens = random_tokens(rng, pairs, semantic_vocab_size, acoustic_vocab_size)
        fields, got = spec_decode(encode(tokens, header))
        assert got == [tuple(pair) for pair in tokens.tolist()]
        assert fields == {"token_rate": token_rate, "semantic_vocab_size": semantic_vocab_size, "acoustic_vocab_size": acoustic_vocab_size,
                          "model_id": header.model_id, "sample_rate": 22050, "sample_count": 0,
                          "metadata": "k=v\nname=ü=1"}


@pytest.mark.parametrize("token_rate", [25, 50, 100])
@pytest.mark.parametrize("semantic_vocab_size", [2, 3, 1000, *OFFICIAL_VOCABS, 1 << 20])
def test_round_trip_every_rate_and_vocabulary(token_rate: int, semantic_vocab_size: int) -> None:
    rng = np.random.default_rng(semantic_vocab_size + token_rate)
    for acoustic_vocab_size in (8192, 2, 5, 1 << 20):
        for columns in (1, 2, None):
            header = Header(token_rate, semantic_vocab_size, acoustic_vocab_size, packet_columns=columns)
            size, ppc = header.packet_pairs, header.pairs_per_column
            for pairs in (0, 1, ppc // 2, size - 1, size, size + ppc // 2, 3 * size + ppc):
                tokens = random_tokens(rng, pairs, semantic_vocab_size, acoustic_vocab_size)
                data = encode(tokens, header)
                full = pairs // size
                last = packet_size(header, pairs - full * size, True)
                expected = header.size + full * packet_size(header, size, False) + last
                assert len(data) == expected
                got_header, got = decode(data)
                assert got_header == header
                assert got.dtype == np.int64 and got.shape == (pairs, 2)
                np.testing.assert_array_equal(got, tokens)
                _, semantic = decode(data, layers="semantic")
                np.testing.assert_array_equal(semantic, tokens[:, 0])


def test_official_tokens_round_trip_with_their_sample_count() -> None:
    tokens = reference("tr100_encode")["tokens"][0]
    header = Header(100, 4096, sample_count=208000, sample_rate=16000)
    got_header, got = decode(encode(tokens, header))
    np.testing.assert_array_equal(got, tokens)
    assert got_header.duration == 13.0


@pytest.mark.parametrize("token_rate", [25, 50, 100])
@pytest.mark.parametrize("sample_rate", [16000, 44100, 8000])
def test_official_token_counts_satisfy_the_sample_count_rule(token_rate: int, sample_rate: int) -> None:
    rng = np.random.default_rng(token_rate)
    durations = [0.5, 0.96, 10.24, 12.8, 13.0, 20.0, 60.0, *rng.uniform(0.2, 600, 300)]
    for duration in durations:
        samples = max(1, round(duration * sample_rate))
        seconds = math.ceil(samples * 16000 / sample_rate) / 16000  # length after resampling to 16 kHz
        padded = seconds + (0.16 - seconds % 0.16)  # official main.py rounding
        pairs = math.ceil(8 * padded / 0.16 / (100 // token_rate))
        header = Header(token_rate, 4096, sample_count=samples, sample_rate=sample_rate)
        assert header.sample_count_problem(pairs) is None, (duration, pairs)
        assert header.sample_count_problem(pairs + 4 * header.pairs_per_column) is not None


@pytest.mark.parametrize("token_rate", [25, 50, 100])
@pytest.mark.parametrize("semantic_vocab_size", OFFICIAL_VOCABS)
def test_nominal_bitrate_and_overhead(token_rate: int, semantic_vocab_size: int) -> None:
    header = Header(token_rate, semantic_vocab_size, sample_count=60 * 16000)
    assert header.nominal_bitrate == token_rate / 2 * (math.log2(semantic_vocab_size) + 13)
    pairs = token_rate // 2 * 60 if token_rate != 25 else 750
    data = encode(random_tokens(np.random.default_rng(0), pairs, semantic_vocab_size), header)
    payload = pairs * (header.semantic_bits + header.acoustic_bits) / 8
    overhead = (len(data) - payload) / payload
    print(f"overhead 60 s, {token_rate} tok/s, V={semantic_vocab_size}: {len(data) - payload:g} B, {100 * overhead:.2f} %")
    assert overhead <= 0.03
    info = scan(io.BytesIO(data))
    assert info.ok and info.pairs == pairs and info.size == len(data)
    assert info.actual_bitrate == pytest.approx(len(data) * 8 / 60)


def test_header_fields_round_trip() -> None:
    header = Header(
        25, 5000, acoustic_vocab_size=1 << 20, model_id=bytes(range(100, 116)), sample_count=44100 * 3,
        sample_rate=44100, packet_columns=255, metadata={"title": "Ünïcödé = fine", "source.file": "a=b", "x": ""},
    )
    tokens = random_tokens(np.random.default_rng(1), 38, 5000, 1 << 20)
    got, _ = decode(encode(tokens, header))
    assert got == header and list(got.metadata) == ["title", "source.file", "x"]
    assert got.packet_seconds == pytest.approx(255 * 0.32) and got.semantic_bits == 13 and got.acoustic_bits == 20
    assert Header(100, 16384).packet_columns == 32 and Header(50, 16384).packet_seconds == pytest.approx(10.24)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token_rate": 30}, "token_rate must be one of"),
        ({"token_rate": 100.0}, "token_rate must be one of"),
        ({"semantic_vocab_size": 1}, "semantic_vocab_size must be in 2"),
        ({"acoustic_vocab_size": (1 << 20) + 1}, "acoustic_vocab_size must be in"),
        ({"semantic_vocab_size": 4096.0}, "semantic_vocab_size must be an int"),
        ({"model_id": b"short"}, "model_id must be 16 bytes"),
        ({"sample_rate": 0}, "sample_rate must be in"),
        ({"sample_rate": 10**7}, "sample_rate must be in"),
        ({"sample_count": -1}, "sample_count must be in"),
        ({"sample_count": 1 << 63}, "sample_count must be in"),
        ({"packet_columns": 0}, "packet_columns must be in"),
        ({"packet_columns": 256}, "packet_columns must be in"),
        ({"metadata": {"bad key": "v"}}, "metadata key"),
        ({"metadata": {"k": "two\nlines"}}, "metadata value"),
        ({"metadata": {"k": "x" * 70000}}, "more than 65535 bytes"),
        ({"metadata": [("k", "v")]}, "metadata must be a mapping"),
    ],
)
def test_invalid_header_fields_raise_value_error(kwargs: dict, message: str) -> None:
    arguments = {"token_rate": 100, "semantic_vocab_size": 4096, **kwargs}
    with pytest.raises(ValueError, match=message):
        Header(**arguments)


def test_bad_arguments_raise_value_error() -> None:
    header = Header(100, 4096)
    with pytest.raises(ValueError, match="data must be bytes, got str"):
        decode("SCDC")
    with pytest.raises(ValueError, match="binary file object with read"):
        StreamReader(b"SCDC")
    with pytest.raises(ValueError, match="binary file object with write"):
        StreamWriter(io.BytesIO().getvalue(), header)
    with pytest.raises(ValueError, match="header must be a bitstream.Header"):
        StreamWriter(io.BytesIO(), {"token_rate": 100})
    with pytest.raises(ValueError, match="layers must be 'both' or 'semantic'"):
        decode(EXAMPLE_BYTES, layers="acoustic")
    assert len({header, Header(100, 4096), EXAMPLE_HEADER}) == 2


def test_numpy_integers_are_accepted_in_the_header() -> None:
    header = Header(np.int64(50), np.int32(8192), sample_count=np.uint64(16000))
    assert type(header.token_rate) is int and header.to_bytes() == Header(50, 8192, sample_count=16000).to_bytes()


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (np.zeros((4, 3), dtype=np.int64), r"shape \[T, 2\]"),
        (np.zeros(4, dtype=np.int64), r"shape \[T, 2\]"),
        (np.zeros((4, 2)), "integers"),
        (np.array([[0, 0], [4096, 1]]), "semantic id 4096 at position 1 is outside"),
        (np.array([[0, 0], [1, -1]]), "acoustic id -1 at position 1"),
        (np.array([[0, 0]], dtype=np.uint64) + np.uint64(1 << 63), "semantic id"),
    ],
)
def test_invalid_tokens_raise_value_error(tokens: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode(tokens, Header(100, 4096))


def test_sample_count_must_fit_the_tokens() -> None:
    with pytest.raises(ValueError, match="does not match 8 token pairs"):
        encode(np.zeros((8, 2), dtype=np.int64), Header(100, 4096, sample_count=16000))
    header = Header(100, 4096, sample_count=16000 * 8 // 50)
    tampered = bytearray(encode(np.zeros((8, 2), dtype=np.int64), header))
    tampered[35:43] = (1 << 40).to_bytes(8, "big")
    tampered[header.size - 2 : header.size] = crc16(tampered[: header.size - 2]).to_bytes(2, "big")
    with pytest.raises(BitstreamError, match="sample count 1099511627776 at 16000 Hz does not match 8 token pairs"):
        decode(bytes(tampered))
    tampered[35:43] = (1 << 63).to_bytes(8, "big")
    tampered[header.size - 2 : header.size] = crc16(tampered[: header.size - 2]).to_bytes(2, "big")
    with pytest.raises(BitstreamError, match="invalid header: sample_count"):
        decode(bytes(tampered))


def test_model_identity_is_checked() -> None:
    mine, other = bytes(range(16)), bytes(range(1, 17))
    data = encode(np.zeros((3, 2), dtype=np.int64), Header(50, 4096, model_id=mine))
    assert decode(data, model_id=mine)[0].model_id == mine
    with pytest.raises(BitstreamError, match="tokens come from model 000102"):
        decode(data, model_id=other)
    unspecified = decode(encode(np.zeros((3, 2), dtype=np.int64), Header(50, 4096)))[0]
    unspecified.check_model(other)
    with pytest.raises(BitstreamError, match="from model 0000"):
        unspecified.check_model(other, allow_unspecified=False)


def test_writer_chunks_give_the_same_bytes() -> None:
    rng = np.random.default_rng(3)
    header = Header(100, 16384, packet_columns=3, metadata={"a": "b"})
    tokens = random_tokens(rng, 1000, 16384)
    for _ in range(5):
        out = io.BytesIO()
        writer = StreamWriter(out, header)
        cuts = np.sort(rng.integers(0, 1001, rng.integers(0, 30)))
        for part in np.split(tokens, cuts):
            writer.write(part)
        writer.close()
        writer.close()
        assert out.getvalue() == encode(tokens, header)
        assert writer.pairs_written == 1000
    with pytest.raises(ValueError, match="closed"):
        writer.write(tokens[:1])


def test_interrupted_writer_leaves_a_detectably_truncated_stream() -> None:
    header = Header(100, 4096, packet_columns=1)
    out = io.BytesIO()
    with pytest.raises(RuntimeError), StreamWriter(out, header) as writer:
        writer.write(np.zeros((20, 2), dtype=np.int64))
        raise RuntimeError("encoder crashed")
    with pytest.raises(BitstreamError, match="stream ends without a final packet"):
        decode(out.getvalue())
    out = io.BytesIO()
    with StreamWriter(out, header) as writer:
        writer.write(np.zeros((20, 2), dtype=np.int64))
    assert decode(out.getvalue())[1].shape == (20, 2)


class ReadOnly:
    """A file object offering only ``read``, recording the sizes asked for."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.requests: list[int] = []

    def read(self, n: int) -> bytes:
        self.requests.append(n)
        return self._data.read(n)

    def tell(self) -> int:
        return self._data.tell()


def test_reader_asks_only_for_what_it_needs() -> None:
    header = Header(100, 32768, packet_columns=4, metadata={"k": "v" * 1000})
    tokens = random_tokens(np.random.default_rng(4), 300, 32768)
    data = encode(tokens, header)
    source = ReadOnly(data + b"next message")
    reader = StreamReader(source)
    got = np.concatenate([packet.tokens for packet in reader])
    np.testing.assert_array_equal(got, tokens)
    assert source.tell() == len(data), "read past the final packet"
    assert max(source.requests) <= max(header.size, packet_size(header, header.packet_pairs, False))


def test_reader_over_pipes_and_sockets_is_incremental() -> None:
    header = Header(100, 8192, packet_columns=1)
    tokens = random_tokens(np.random.default_rng(5), 8 * 5 + 3, 8192)

    def run(reader_file, writer_file) -> None:
        first_seen = threading.Event()
        failures: list[str] = []

        def produce() -> None:
            with writer_file as out:
                writer = StreamWriter(out, header)
                writer.write(tokens[:8])
                if not first_seen.wait(10):
                    failures.append("the reader did not deliver packet 0 before more bytes were sent")
                writer.write(tokens[8:20])
                writer.write(tokens[20:])
                writer.close()

        thread = threading.Thread(target=produce)
        thread.start()
        with reader_file as source:
            reader = StreamReader(source)
            packets = []
            for packet in reader:
                packets.append(packet)
                first_seen.set()
        thread.join()
        assert not failures
        assert [p.index for p in packets] == list(range(6)) and packets[-1].final
        np.testing.assert_array_equal(np.concatenate([p.tokens for p in packets]), tokens)

    read_fd, write_fd = os.pipe()
    run(os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb"))
    read_fd, write_fd = os.pipe()
    run(os.fdopen(read_fd, "rb", buffering=0), os.fdopen(write_fd, "wb", buffering=0))
    left, right = socket.socketpair()
    with left, right:
        run(left.makefile("rb"), right.makefile("wb"))
    left, right = socket.socketpair()
    with left, right:
        run(left.makefile("rb", buffering=0), right.makefile("wb", buffering=0))


def test_write_and_read_files(tmp_path) -> None:
    header = Header(25, 32768, sample_count=16000 * 3)
    tokens = random_tokens(np.random.default_rng(6), 38, 32768)
    path = tmp_path / "a.scdc"
    size = write_file(path, tokens, header)
    assert size == path.stat().st_size
    np.testing.assert_array_equal(read_file(path)[1], tokens)
    with pytest.raises(FileExistsError):
        write_file(path, tokens, header, overwrite=False)
    with open(path, "ab") as file:
        file.write(b"\x00")
    with pytest.raises(BitstreamError, match="trailing data after the final packet"):
        read_file(path)


# Resilient reading --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream() -> tuple[Header, np.ndarray, bytes, list[int]]:
    header = Header(50, 10000, packet_columns=2)  # 14-bit semantic ids, 8 pairs a packet
    tokens = random_tokens(np.random.default_rng(7), 8 * 6 + 5, 10000)
    data = encode(tokens, header)
    return header, tokens, data, packet_offsets(data, header, len(tokens))


def read_resilient(data: bytes, layers: str = "both") -> tuple[StreamReader, dict[int, np.ndarray]]:
    seen: list[Damage] = []
    reader = StreamReader(io.BytesIO(data), resilient=True, layers=layers, on_damage=seen.append)
    packets = {p.index: (p.tokens if layers == "both" else p.semantic) for p in reader}
    assert seen == reader.damage
    return reader, packets


def check_packets(packets: dict[int, np.ndarray], tokens: np.ndarray) -> None:
    for index, got in packets.items():
        np.testing.assert_array_equal(got, tokens[8 * index : 8 * index + len(got)])


def test_flipped_bit_loses_exactly_one_packet(stream) -> None:
    header, tokens, data, offsets = stream
    for k in range(len(offsets)):
        for where in (0, 3, 10):
            damaged = bytearray(data)
            damaged[offsets[k] + where] ^= 0x10
            with pytest.raises(BitstreamError, match=f"packet {k} at byte {offsets[k]}"):
                decode(bytes(damaged))
            reader, packets = read_resilient(bytes(damaged))
            assert sorted(packets) == [i for i in range(len(offsets)) if i != k]
            check_packets(packets, tokens)
            assert len(reader.damage) == 1
            damage = reader.damage[0]
            assert (damage.offset, damage.first_packet) == (offsets[k], k)
            if k < len(offsets) - 1:
                assert damage.lost_packets == 1 and reader.total_pairs == len(tokens)
            else:
                assert damage.lost_packets is None and not reader.complete


def test_deleted_and_inserted_bytes_resynchronise(stream) -> None:
    header, tokens, data, offsets = stream
    cut = data[: offsets[2] + 5] + data[offsets[2] + 9 :]
    reader, packets = read_resilient(cut)
    assert sorted(packets) == [0, 1, 3, 4, 5, 6]
    assert [(d.first_packet, d.lost_packets) for d in reader.damage] == [(2, 1)]
    check_packets(packets, tokens)
    junk = data[: offsets[3]] + b"\xd3\xc3junk\xd3" + data[offsets[3] :]
    reader, packets = read_resilient(junk)
    assert sorted(packets) == list(range(7))
    assert [(d.first_packet, d.lost_packets) for d in reader.damage] == [(3, 0)]
    assert "no packet lost" in str(reader.damage[0])
    dropped = data[: offsets[1]] + data[offsets[3] :]
    with pytest.raises(BitstreamError, match="sequence number 3, expected 1"):
        decode(dropped)
    reader, packets = read_resilient(dropped)
    assert sorted(packets) == [0, 3, 4, 5, 6] and reader.total_pairs == len(tokens)
    assert [(d.first_packet, d.lost_packets) for d in reader.damage] == [(1, 2)]
    assert "packets 1-2 lost" in str(reader.damage[0])
    repeated = data[: offsets[2]] + data[offsets[1] : offsets[2]] + data[offsets[2] :]
    with pytest.raises(BitstreamError, match="sequence number 1, expected 2"):
        decode(repeated)
    reader, packets = read_resilient(repeated)
    assert sorted(packets) == list(range(7)) and [d.lost_packets for d in reader.damage] == [0]


def test_truncation_anywhere_is_reported(stream) -> None:
    header, tokens, data, offsets = stream
    for end in (offsets[0], offsets[4], offsets[4] + 1, offsets[4] + 3, offsets[4] + 20, len(data) - 1):
        with pytest.raises(BitstreamError, match="truncated|stream ends"):
            decode(data[:end])
        reader, packets = read_resilient(data[:end])
        assert sorted(packets) == list(range(sum(o + packet_size(header, 8, False) <= end for o in offsets[:-1])))
        assert not reader.complete and reader.damage[-1].lost_packets is None
        info = scan(io.BytesIO(data[:end]))
        assert not info.ok and info.pairs is None and info.size == end


def test_valid_checksum_but_invalid_content_loses_that_packet(stream) -> None:
    header, tokens, data, offsets = stream
    last = len(offsets) - 1
    for k in (1, last):
        start, end = offsets[k], offsets[k + 1] if k < last else len(data)
        packet = bytearray(data[start:end])
        body = 6 if k == last else 4
        packet[body] = 0xFF  # the first semantic id (14 bits) becomes 16383 >= 10000
        packet[body + 1] |= 0xFC
        forged = data[:start] + with_crc(bytes(packet)) + data[end:]
        message = rf"packet {k} at byte {start}: semantic id 16383 at pair 0 is outside \[0, 10000\)"
        with pytest.raises(BitstreamError, match=message):
            decode(forged)
        reader, packets = read_resilient(forged)
        assert k not in packets and [(d.first_packet, d.lost_packets) for d in reader.damage] == [(k, 1)]
        assert reader.total_pairs == len(tokens)
        check_packets(packets, tokens)
    packet = bytearray(data[offsets[last] :])
    packet[-3] |= 0x01  # the final packet's 5 acoustic ids take 65 bits: 7 padding bits in this byte
    forged = data[: offsets[last]] + with_crc(bytes(packet))
    with pytest.raises(BitstreamError, match="nonzero padding bits after the acoustic layer"):
        decode(forged)
    reader, packets = read_resilient(forged)
    assert last not in packets and reader.total_pairs == len(tokens)
    reader, packets = read_resilient(forged, layers="semantic")
    assert last in packets and not reader.damage
    check_packets(packets, tokens[:, 0])


def test_old_vocabulary_spellings_warn_and_work() -> None:
    with pytest.warns(DeprecationWarning, match=r"Header\(semantic_vocab=\.\.\.\) is deprecated, use semantic_vocab_size"):
        header = Header(100, semantic_vocab=4096, acoustic_vocab_size=64)
    assert header == Header(100, semantic_vocab_size=4096, acoustic_vocab_size=64)
    with pytest.warns(DeprecationWarning, match=r"Header.acoustic_vocab is deprecated, use acoustic_vocab_size"):
        assert header.acoustic_vocab == 64
    with pytest.raises(TypeError, match="both acoustic_vocab= and acoustic_vocab_size="):
        Header(100, 4096, acoustic_vocab=64, acoustic_vocab_size=64)
