"""Bitstream benchmark: bit-packing speed against a pure-Python packer, and container overhead.

    python benchmarks/bench_bitstream.py [--values N] [--repeats K]

Prints Markdown tables (the "Bitstream" section of benchmarks/RESULTS.md):

1. Packing and unpacking speed of ``bitstream.pack_bits`` / ``unpack_bits`` against a
   per-value pure-Python packer written in the style of Encodec's ``BitPacker`` /
   ``BitUnpacker`` (LSB-first, one ``write`` per byte), on the same random values; the
   outputs are checked to be identical. MB/s counts packed bytes.
2. Whole-stream ``encode`` / ``decode`` time for one hour of tokens at every token rate.
3. Container overhead (header + packet framing + padding, over the nominal payload) of
   .scdc files of random tokens for every token rate and official vocabulary.
4. The same for 60 s of random tokens written one token column at a time through a
   ``StreamWriter`` given entropy tables (learned from other random tokens, so no packet pays
   for coding): with a header that names the tables at once (version 2, 8 bytes of table id)
   and with the writer's default, the header held back until the packets of the first write
   show whether coding pays.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from semanticodec.bitstream import EntropyTables, Header, StreamWriter, decode, encode, learn_tables, pack_bits, unpack_bits
from semanticodec.bitstream.header import FIXED_SIZE


class PyBitPacker:
    """Pure-Python per-value packer in the manner of Encodec's BitPacker (for comparison)."""

    def __init__(self, bits: int, fo: io.BytesIO) -> None:
        self._current_value = 0
        self._current_bits = 0
        self.bits = bits
        self.fo = fo

    def push(self, value: int) -> None:
        self._current_value += value << self._current_bits
        self._current_bits += self.bits
        while self._current_bits >= 8:
            self.fo.write(bytes([self._current_value & 0xFF]))
            self._current_bits -= 8
            self._current_value >>= 8

    def flush(self) -> None:
        if self._current_bits:
            self.fo.write(bytes([self._current_value]))
            self._current_value = 0
            self._current_bits = 0


class PyBitUnpacker:
    """Pure-Python per-value unpacker in the manner of Encodec's BitUnpacker."""

    def __init__(self, bits: int, fo: io.BytesIO) -> None:
        self.bits = bits
        self.fo = fo
        self._mask = (1 << bits) - 1
        self._current_value = 0
        self._current_bits = 0

    def pull(self) -> int | None:
        while self._current_bits < self.bits:
            buf = self.fo.read(1)
            if not buf:
                return None
            self._current_value += buf[0] << self._current_bits
            self._current_bits += 8
        out = self._current_value & self._mask
        self._current_value >>= self.bits
        self._current_bits -= self.bits
        return out


def py_pack(values: list[int], bits: int) -> bytes:
    fo = io.BytesIO()
    packer = PyBitPacker(bits, fo)
    for value in values:
        packer.push(value)
    packer.flush()
    return fo.getvalue()


def py_unpack(data: bytes, bits: int, count: int) -> list[int]:
    unpacker = PyBitUnpacker(bits, io.BytesIO(data))
    return [unpacker.pull() for _ in range(count)]


def best_time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def speed_table(n: int, repeats: int) -> str:
    rng = np.random.default_rng(0)
    rows = [
        "| bits | values | operation | pure Python (s) | bitstream LSB-first (s) | ratio "
        "| bitstream MSB-first (s) | MB/s (MSB-first) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for bits in (12, 13, 14, 20):
        values = rng.integers(0, 1 << bits, n)
        as_list = values.tolist()
        reference = py_pack(as_list, bits)
        assert pack_bits(values, bits, "little") == reference
        packed_big = pack_bits(values, bits, "big")
        assert np.array_equal(unpack_bits(reference, bits, n, "little"), values)
        assert py_unpack(reference, bits, n) == as_list
        assert np.array_equal(unpack_bits(packed_big, bits, n, "big"), values)
        cases = [
            ("pack", lambda: py_pack(as_list, bits), lambda: pack_bits(values, bits, "little"),
             lambda: pack_bits(values, bits, "big")),
            ("unpack", lambda: py_unpack(reference, bits, n), lambda: unpack_bits(reference, bits, n, "little"),
             lambda: unpack_bits(packed_big, bits, n, "big")),
        ]
        for name, python, little, big in cases:
            t_py = best_time(python, 1)
            t_little = best_time(little, repeats)
            t_big = best_time(big, repeats)
            megabytes = len(reference) / 1e6
            rows.append(
                f"| {bits} | {n} | {name} | {t_py:.3f} | {t_little:.5f} | {t_py / t_little:.0f}× | "
                f"{t_big:.5f} | {megabytes / t_big:.0f} |"
            )
    return "\n".join(rows)


def stream_table(repeats: int) -> str:
    rng = np.random.default_rng(2)
    rows = [
        "| token rate | semantic V | pairs (1 h) | file (bytes) | encode (ms) | decode (ms) | decode (Mpairs/s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in (100, 50, 25):
        pairs = round(rate / 2 * 3600)
        header = Header(rate, 16384, sample_count=3600 * 16000)
        tokens = np.stack([rng.integers(0, 16384, pairs), rng.integers(0, 8192, pairs)], axis=1)
        data = encode(tokens, header)
        assert np.array_equal(decode(data)[1], tokens)
        t_encode = best_time(lambda: encode(tokens, header), repeats)
        t_decode = best_time(lambda: decode(data), repeats)
        rows.append(
            f"| {rate} | 16384 | {pairs} | {len(data)} | {1e3 * t_encode:.1f} | {1e3 * t_decode:.1f} | "
            f"{pairs / t_decode / 1e6:.1f} |"
        )
    return "\n".join(rows)


def _random_streams(seconds: float, vocabs: tuple[int, ...], files: int = 1) -> Iterator[tuple[Header, list[np.ndarray], float]]:
    """For every token rate and semantic vocabulary in ``vocabs`` (acoustic 8192): the header,
    ``files`` arrays of random tokens ``[pairs, 2]`` and the payload in bytes."""
    rng = np.random.default_rng(1)
    for rate in (100, 50, 25):
        pairs = round(rate / 2 * seconds)
        for vocab in vocabs:
            header = Header(rate, vocab, sample_count=round(seconds * 16000))
            tokens = [np.stack([rng.integers(0, vocab, pairs), rng.integers(0, 8192, pairs)], axis=1) for _ in range(files)]
            yield header, tokens, pairs * (header.semantic_bits + header.acoustic_bits) / 8


def overhead_table(seconds: float) -> str:
    rows = [
        "| token rate | packet | semantic V | pairs | payload (bytes) | file (bytes) | overhead (bytes) | overhead "
        "| nominal bps | actual bps |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for header, (tokens,), payload in _random_streams(seconds, (4096, 8192, 16384, 32768)):
        size = len(encode(tokens, header))
        rows.append(
            f"| {header.token_rate} | {header.packet_seconds:.2f} s | {header.semantic_vocab_size} | {len(tokens)} | "
            f"{payload:g} | {size} | {size - payload:g} | {100 * (size - payload) / payload:.2f} % | "
            f"{header.nominal_bitrate:g} | {size * 8 / seconds:.1f} |"
        )
    return "\n".join(rows)


def _streamed_size(tokens: np.ndarray, header: Header, tables: EntropyTables) -> int:
    """Bytes of ``tokens`` written through a StreamWriter one token column per ``write``."""
    buffer = io.BytesIO()
    with StreamWriter(buffer, header, tables) as writer:
        for start in range(0, len(tokens), header.pairs_per_column):
            writer.write(tokens[start : start + header.pairs_per_column])
    return len(buffer.getvalue())


def streaming_overhead_table(seconds: float) -> str:
    rows = [
        "| token rate | semantic V | payload (bytes) | fixed width, no tables | tables named at once "
        "| header held back (default) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for header, (tokens, other), payload in _random_streams(seconds, (4096, 16384), files=2):
        tables = learn_tables([other], header.token_rate, header.semantic_vocab_size, 8192, bytes(16))
        sizes = (
            len(encode(tokens, header)),
            _streamed_size(tokens, replace(header, table_id=tables.table_id), tables),
            _streamed_size(tokens, header, tables),
        )
        cells = " | ".join(f"{size} ({100 * (size - payload) / payload:.2f} %)" for size in sizes)
        rows.append(f"| {header.token_rate} | {header.semantic_vocab_size} | {payload:g} | {cells} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=200_000, help="values per packing run")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats of the vectorised packer (best kept)")
    args = parser.parse_args()
    pack_bits(np.arange(8), 4)
    unpack_bits(b"\0" * 4, 4, 8)
    pack_bits(np.arange(8), 4, "little")
    unpack_bits(b"\0" * 4, 4, 8, "little")
    print("### Bit packing speed\n")
    print(speed_table(args.values, args.repeats))
    print("\n### Whole-stream encode and decode (one hour of tokens)\n")
    print(stream_table(max(1, args.repeats // 4)))
    print(f"\n### Container overhead (fixed header {FIXED_SIZE + 2} bytes, no metadata)\n")
    for seconds in (10.0, 60.0, 600.0):
        print(f"{seconds:g} s of audio:\n")
        print(overhead_table(seconds))
        print()
    print("### Streaming writer with entropy tables, 60 s of random tokens: file bytes (overhead)\n")
    print(streaming_overhead_table(60.0))


if __name__ == "__main__":
    main()
