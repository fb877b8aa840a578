"""Incremental .scdc writing and reading over binary file objects (files, pipes, sockets), in
the packet layout of :mod:`.packet` (FORMAT.md §3).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO, Literal

import numpy as np
from numpy.typing import ArrayLike

from semanticodec.bitstream.bitpack import pack_bits, packed_size, unpack_bits
from semanticodec.bitstream.errors import BitstreamError
from semanticodec.bitstream.header import CRC_SIZE, NO_TABLE, Header, crc16, read_header
from semanticodec.bitstream.packet import CODED_FLAG, FINAL_FLAG, SYNC, packet_size, seq_modulus
from semanticodec.bitstream.resync import next_candidate
from semanticodec.bitstream.tables import EntropyTables

DEFAULT_CHUNK = 1 << 16

Layers = Literal["both", "semantic"]
TableSource = EntropyTables | Callable[[bytes], "EntropyTables | None"] | None
"""Where a reader finds the entropy tables a stream names: the tables themselves, a function
from table id to tables (None when unknown), or None (no tables: version 1 streams only)."""


def check_tokens(tokens: ArrayLike, header: Header) -> np.ndarray:
    """Validate tokens ``[T, 2]`` (semantic, acoustic) against ``header``; int64 copy or view.

    Raises ValueError naming the first problem: shape, dtype, or an id outside [0, vocab).
    """
    array = np.asarray(tokens)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"tokens must have shape [T, 2] (semantic, acoustic), got {list(array.shape)}")
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"tokens must be integers, got dtype {array.dtype}")
    for column, (name, vocab) in enumerate((("semantic", header.semantic_vocab_size), ("acoustic", header.acoustic_vocab_size))):
        ids = array[:, column]
        bad = np.flatnonzero((ids < 0) | (ids >= vocab))
        if bad.size:
            raise ValueError(f"{name} id {ids[bad[0]]} at position {bad[0]} is outside [0, {vocab})")
    return array.astype(np.int64, copy=False)


def _length_field(length: int) -> bytes:
    """A coded layer length: one byte below 128, else two bytes, the first with its top bit set."""
    return bytes([length]) if length < 0x80 else struct.pack(">H", 0x8000 | length)


def coded_layers(header: Header, tokens: np.ndarray, tables: EntropyTables, budget: int) -> tuple[bytes, bytes] | None:
    """The range-coded (semantic, acoustic) layers of one packet's checked tokens ``[n, 2]``
    int64, or None when together they would take more than ``budget`` bytes."""
    from semanticodec.bitstream.entropy import encode_layer

    semantic_model, acoustic_model = tables.kernel_models
    ppc = header.pairs_per_column
    out = np.zeros(budget + 8, np.uint8)
    semantic = np.ascontiguousarray(tokens[:, 0])
    size = encode_layer(semantic, semantic[:0], ppc, semantic_model, out)
    if size < 0:
        return None
    semantic_layer = out[:size].tobytes()
    out = np.zeros(budget - size + 8, np.uint8)
    size = encode_layer(np.ascontiguousarray(tokens[:, 1]), semantic, ppc, acoustic_model, out)
    if size < 0:
        return None
    return semantic_layer, out[:size].tobytes()


def encode_packet(
    header: Header, seq: int, tokens: np.ndarray, final: bool, tables: EntropyTables | None = None
) -> tuple[bytes, bool]:
    """One packet for checked tokens ``[n, 2]`` int64 (n == packet_pairs unless final):
    ``(bytes, coded)``. With ``tables`` it is range coded when that makes it smaller."""
    flags = (seq % seq_modulus(header)) | (FINAL_FLAG if final else 0)
    head = struct.pack(">H", flags) + (struct.pack(">H", len(tokens)) if final else b"")
    fixed = pack_bits(tokens[:, 0], header.semantic_bits) + pack_bits(tokens[:, 1], header.acoustic_bits)
    body, coded = head + fixed, False
    if tables is not None and len(tokens):
        layers = coded_layers(header, tokens, tables, len(fixed))
        if layers is not None:
            lengths = _length_field(len(layers[0])) + _length_field(len(layers[1]))
            if len(lengths) + len(layers[0]) + len(layers[1]) < len(fixed):
                body = struct.pack(">H", flags | CODED_FLAG) + head[2:] + lengths + layers[0] + layers[1]
                coded = True
    return SYNC + body + struct.pack(">H", crc16(body)), coded


class StreamWriter:
    """Write a .scdc stream to a binary file object as tokens arrive.

    The header is written at once (with entropy tables, maybe later: see below); ``write``
    takes token chunks ``[n, 2]`` of any n and writes each packet as soon as it is full;
    ``close`` writes the final packet with the remaining pairs and flushes. The file object is
    not closed. Used as a context manager, the final packet is written only when the block ends
    without an exception, so an interrupted stream stays detectably truncated (or empty).

    With ``tables`` (entropy tables for the header's token rate and vocabularies) every packet
    is range coded when that makes it smaller (``coded_packets`` counts them), under a version 2
    header that names them (``self.header.table_id``). A header that names them already is
    written at once. Otherwise the writer holds the header back until the first ``write`` that
    completes a packet, or ``close`` (no reader can use a header alone, so this delays nothing),
    and names the tables only when one of the packets it then writes is coded; when none is
    (e.g. incompressible ids), the stream is version 1, every packet fixed width, byte for byte
    what a writer without tables writes, and ``self.tables`` becomes None. Without tables, the
    stream is version 1.
    """

    def __init__(self, fileobj: BinaryIO, header: Header, tables: EntropyTables | None = None) -> None:
        if not callable(getattr(fileobj, "write", None)):
            raise ValueError(f"StreamWriter needs a binary file object with write(), got {type(fileobj).__name__}")
        if not isinstance(header, Header):
            raise ValueError(f"header must be a bitstream.Header, got {type(header).__name__}")
        if tables is not None:
            if not isinstance(tables, EntropyTables):
                raise ValueError(f"tables must be bitstream.EntropyTables, got {type(tables).__name__}")
            if not tables.fits(header.token_rate, header.semantic_vocab_size, header.acoustic_vocab_size):
                raise ValueError(
                    f"entropy tables for {tables.token_rate} tok/s, vocabularies {tables.semantic_vocab_size} + "
                    f"{tables.acoustic_vocab_size} cannot code a {header.token_rate} tok/s, "
                    f"{header.semantic_vocab_size} + {header.acoustic_vocab_size} stream"
                )
            if header.table_id not in (NO_TABLE, tables.table_id):
                raise ValueError(f"the header names entropy tables {header.table_id.hex()}, the tables given are {tables.table_id.hex()}")
        elif header.table_id != NO_TABLE:
            raise ValueError(f"the header names entropy tables {header.table_id.hex()}: pass them as tables")
        self.header = header
        self.tables = tables
        self.pairs_written = 0
        self.coded_packets = 0
        self.closed = False
        self._file = fileobj
        self._seq = 0
        self._pending = np.zeros((0, 2), dtype=np.int64)
        self._undecided = tables if tables is not None and header.table_id == NO_TABLE else None
        """The tables while the header is held back (not yet decided whether it names them)."""
        if self._undecided is None:
            self._emit(header.to_bytes())

    def write(self, tokens: ArrayLike) -> None:
        """Append token pairs ``[n, 2]`` (semantic, acoustic ids); writes every full packet."""
        if self.closed:
            raise ValueError("write to a closed StreamWriter")
        chunk = check_tokens(tokens, self.header)
        pending = np.concatenate([self._pending, chunk]) if len(self._pending) else chunk
        size = self.header.packet_pairs
        full = len(pending) // size
        blocks = [pending[i * size : (i + 1) * size] for i in range(full)]
        self._pending = pending[full * size :].copy()
        self.pairs_written += len(chunk)
        self._emit(self._packets(blocks, final=False))

    def _packets(self, blocks: list[np.ndarray], final: bool) -> bytes:
        """The bytes of the next packets, one per token block ``[n, 2]`` (the last one final when
        ``final``), preceded by the header when it was held back (see the class docstring)."""
        if not blocks:
            return b""
        undecided = self._undecided
        header = self.header if undecided is None else replace(self.header, table_id=undecided.table_id)
        packets = self._encode(header, blocks, final, self.tables)
        coded = sum(was_coded for _, was_coded in packets)
        prefix = b""
        if undecided is not None:
            self._undecided = None
            if coded:
                self.header = header
            else:  # no packet pays for the table id: version 1 throughout
                self.tables = None
                packets = self._encode(self.header, blocks, final, None)
            prefix = self.header.to_bytes()
        self._seq += len(blocks)
        self.coded_packets += coded
        return prefix + b"".join(data for data, _ in packets)

    def _encode(
        self, header: Header, blocks: list[np.ndarray], final: bool, tables: EntropyTables | None
    ) -> list[tuple[bytes, bool]]:
        last = len(blocks) - 1
        return [encode_packet(header, self._seq + i, block, final and i == last, tables) for i, block in enumerate(blocks)]

    def close(self) -> None:
        """Write the final packet (the pairs not yet written, possibly none) and flush.

        Raises ValueError, writing nothing, when the header's known sample count does not
        fit the number of pairs written (see ``Header.sample_count_problem``).
        """
        if self.closed:
            return
        problem = self.header.sample_count_problem(self.pairs_written)
        if problem is not None:
            raise ValueError(problem)
        self.closed = True
        self._emit(self._packets([self._pending], final=True))
        self._pending = self._pending[:0]

    def _emit(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if written is None:
                raise ValueError("the file object is non-blocking and not ready; StreamWriter needs a blocking one")
            view = view[written:]
        flush = getattr(self._file, "flush", None)
        if flush is not None:
            flush()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.closed = True


@dataclass(frozen=True)
class Packet:
    """One decoded packet.

    index: position of the packet in the stream (sequence number, unwrapped), from 0.
    start: index of its first token pair in the stream (index * packet_pairs).
    semantic, acoustic: ids ``[n]`` int64; acoustic is None when reading the semantic layer alone.
    final: whether this is the last packet of the stream. coded: whether it was range coded.
    """

    index: int
    start: int
    semantic: np.ndarray
    acoustic: np.ndarray | None
    final: bool
    coded: bool = False

    @property
    def tokens(self) -> np.ndarray:
        """Token pairs ``[n, 2]`` int64 (semantic, acoustic)."""
        if self.acoustic is None:
            raise ValueError("this packet was read without its acoustic layer")
        return np.stack([self.semantic, self.acoustic], axis=1)


@dataclass(frozen=True)
class Damage:
    """Damage found by a resilient StreamReader.

    offset: byte offset in the stream where it was detected.
    first_packet: index of the first packet lost.
    lost_packets: how many packets were lost (0 when only junk bytes were skipped, None
    when the stream ended before another intact packet).
    reason: what was wrong.
    """

    offset: int
    first_packet: int
    lost_packets: int | None
    reason: str

    def __str__(self) -> str:
        if self.lost_packets is None:
            lost = f"packets from {self.first_packet} on lost"
        elif self.lost_packets == 0:
            lost = "no packet lost"
        elif self.lost_packets == 1:
            lost = f"packet {self.first_packet} lost"
        else:
            lost = f"packets {self.first_packet}-{self.first_packet + self.lost_packets - 1} lost"
        return f"byte {self.offset}: {self.reason} ({lost})"


class _Input:
    """Buffered reading that never waits for more bytes than it needs (pipes, sockets).

    With ``read1`` it takes whatever is available up to a chunk; with plain ``read`` it asks
    for exactly the missing bytes.
    """

    def __init__(self, fileobj: BinaryIO, chunk_size: int) -> None:
        read1 = getattr(fileobj, "read1", None)
        self._read = read1 if read1 is not None else fileobj.read
        self._chunk = chunk_size if read1 is not None else 0
        self._buf = bytearray()
        self._pos = 0
        self.offset = 0
        self.eof = False

    @property
    def available(self) -> int:
        return len(self._buf) - self._pos

    def fill(self, n: int) -> bool:
        """Read until ``n`` bytes are buffered; False when the stream ends first."""
        while self.available < n and not self.eof:
            chunk = self._read(max(n - self.available, self._chunk))
            if chunk is None:
                raise ValueError("the file object is non-blocking and has no data; StreamReader needs a blocking one")
            if not chunk:
                self.eof = True
                break
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += chunk
        return self.available >= n

    def peek(self, n: int) -> bytes:
        return bytes(self._buf[self._pos : self._pos + n])

    def consume(self, n: int) -> None:
        self._pos += n
        self.offset += n

    def find(self, pattern: bytes) -> int:
        """Index of ``pattern`` in the unconsumed buffered bytes, or -1."""
        index = self._buf.find(pattern, self._pos)
        return -1 if index < 0 else index - self._pos

    def read_exact(self, n: int) -> bytes:
        """Up to ``n`` bytes, fewer only at end of stream."""
        self.fill(n)
        data = self.peek(n)
        self.consume(len(data))
        return data

    def drain(self) -> int:
        """Read to end of stream without keeping the bytes; returns their count."""
        count = 0
        while self.fill(1):
            count += self.available
            self.consume(self.available)
        return count


class _Bad(Exception):
    """A packet problem. ``framed``: the packet passed its CRC, so ``index``, ``size``,
    ``final`` and ``pairs`` are trustworthy and reading can go on right after it."""

    def __init__(
        self, reason: str, framed: bool = False, index: int = 0, size: int = 0, final: bool = False, pairs: int = 0
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.framed = framed
        self.index = index
        self.size = size
        self.final = final
        self.pairs = pairs


class StreamReader:
    """Read a .scdc stream packet by packet as its bytes arrive.

    The header is read on construction (BitstreamError if it is bad). Iterating yields
    ``Packet`` objects as soon as their bytes are in, and stops after the final packet.
    Reads are bounded: a file object with ``read1`` (buffered files, pipes, sockets) is
    asked for up to ``chunk_size`` bytes at a time and returns what is available; one with
    only ``read`` is asked for exactly the bytes needed, so it is never read past the final
    packet. At most one header or packet plus one chunk is buffered.

    Strict mode (default): any damage raises BitstreamError. Resilient mode: a damaged,
    missing or truncated packet is recorded in ``damage`` (and passed to ``on_damage``),
    and reading goes on at the next intact packet, found by its sync marker.
    ``layers="semantic"`` skips unpacking the acoustic layer (``Packet.acoustic`` is None).
    After the final packet, ``total_pairs`` is the stream's pair count; a known sample
    count in the header that does not fit it raises BitstreamError in both modes.

    A version 2 stream needs the entropy tables its header names: ``tables`` gives them (see
    ``TableSource``); when they are not found, construction raises BitstreamError.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        *,
        resilient: bool = False,
        layers: Layers = "both",
        on_damage: Callable[[Damage], None] | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        tables: TableSource = None,
    ) -> None:
        if layers not in ("both", "semantic"):
            raise ValueError(f"layers must be 'both' or 'semantic', got {layers!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        if not callable(getattr(fileobj, "read", None)):
            raise ValueError(f"StreamReader needs a binary file object with read(), got {type(fileobj).__name__}")
        self._in = _Input(fileobj, chunk_size)
        self.header = read_header(self._in.read_exact)
        self.tables = resolve_tables(self.header, tables)
        self.resilient = resilient
        self.layers = layers
        self.damage: list[Damage] = []
        self.total_pairs: int | None = None
        self._on_damage = on_damage
        self._next = 0
        self._ended = False

    @property
    def complete(self) -> bool:
        """Whether the final packet has been read."""
        return self.total_pairs is not None

    @property
    def bytes_read(self) -> int:
        """Bytes consumed so far (header and packets)."""
        return self._in.offset

    def __iter__(self) -> Iterator[Packet]:
        while not self.complete and not self._ended:
            packet = self._step()
            if packet is not None:
                yield packet

    def at_end(self) -> bool:
        """Whether nothing follows the bytes consumed so far (reads at most one chunk)."""
        return not self._in.fill(1)

    def drain(self) -> int:
        """Read and discard the rest of the stream; returns the number of bytes."""
        return self._in.drain()

    def _report(self, offset: int, first: int, lost: int | None, reason: str) -> None:
        damage = Damage(offset, first, lost, reason)
        self.damage.append(damage)
        if self._on_damage is not None:
            self._on_damage(damage)

    def _step(self) -> Packet | None:
        """Read the next packet; on damage report it and resynchronise (None: nothing to yield)."""
        offset = self._in.offset
        first = self._next
        if not self._in.fill(1):
            reason = "stream ends without a final packet (truncated)"
            if not self.resilient:
                raise BitstreamError(f"packet {first} at byte {offset}: {reason}")
            self._report(offset, first, None, reason)
            self._ended = True
            return None
        try:
            packet = self._packet()
        except _Bad as bad:
            if not self.resilient:
                raise BitstreamError(f"packet {first} at byte {offset}: {bad.reason}") from None
            if bad.framed:
                self._drop(offset, first, bad, bad.reason)
                return None
            return self._resync(offset, first, bad.reason)
        if packet.index > first:
            self._report(offset, first, packet.index - first, f"packets missing before packet {packet.index}")
        return packet

    def _resync(self, offset: int, first: int, reason: str) -> Packet | None:
        """Scan past the damage at ``offset`` for the next packet that passes its CRC."""
        self._in.consume(1)
        while self._seek_sync():
            at = self._in.offset
            try:
                packet = self._packet()
            except _Bad as bad:
                if bad.framed:
                    self._drop(offset, first, bad, f"{reason}; next packet at byte {at} is invalid too: {bad.reason}")
                    return None
                self._in.consume(1)
                continue
            self._report(offset, first, packet.index - first, f"{reason}; resynchronised at byte {at}")
            return packet
        self._report(offset, first, None, f"{reason}; no intact packet follows")
        self._ended = True
        return None

    def _drop(self, offset: int, first: int, bad: _Bad, reason: str) -> None:
        """Skip a packet that passed its CRC but holds invalid ids, with those before it."""
        self._report(offset, first, bad.index - first + 1, reason)
        self._in.consume(bad.size)
        self._next = bad.index + 1
        if bad.final:
            self._finish(bad.index, bad.pairs)

    def _seek_sync(self) -> bool:
        """Skip to the next sync marker that may start an intact packet (all buffered candidates
        checked at once, see ``resync``); False at end of stream."""
        while True:
            index = next_candidate(self._in.peek(self._in.available), self.header, self._next)
            if index >= 0:
                self._in.consume(index)
                return True
            self._in.consume(max(0, self._in.available - (len(SYNC) - 1)))
            if not self._in.fill(self._in.available + 1):
                return False

    def _packet(self) -> Packet:
        """Parse the packet at the current position and consume it, or raise _Bad (consuming nothing).

        Strict mode accepts only the expected sequence number; resilient mode accepts any up
        to half the sequence modulus minus one packets ahead (the packets in between are lost).
        """
        header = self.header
        if not self._in.fill(4):
            raise _Bad(f"truncated packet: stream ends {self._in.available} bytes into it")
        head = self._in.peek(4)
        if head[:2] != SYNC:
            raise _Bad(f"sync marker missing (found {head[:2].hex(' ')})")
        flags = int.from_bytes(head[2:4], "big")
        final = bool(flags & FINAL_FLAG)
        modulus = seq_modulus(header)
        coded = header.version == 2 and bool(flags & CODED_FLAG)
        seq = flags & (modulus - 1)
        pairs = header.packet_pairs
        start = 4
        if final:
            if not self._in.fill(6):
                raise _Bad(f"truncated packet: stream ends {self._in.available} bytes into it")
            pairs = int.from_bytes(self._in.peek(6)[4:6], "big")
            if pairs >= header.packet_pairs:
                raise _Bad(f"final packet claims {pairs} pairs, must be fewer than {header.packet_pairs}")
            start = 6
        size = packet_size(header, pairs, final)
        if coded:
            lengths, start = self._lengths(start)
            coded_size = start + sum(lengths) + CRC_SIZE
            if coded_size >= size:
                raise _Bad(f"entropy-coded packet of {coded_size} bytes is not smaller than its fixed-width form ({size} bytes)")
            size = coded_size
        if not self._in.fill(size):
            raise _Bad(f"truncated packet: stream ends {self._in.available} of {size} bytes into it")
        data = self._in.peek(size)
        if crc16(data[2:-CRC_SIZE]) != int.from_bytes(data[-CRC_SIZE:], "big"):
            raise _Bad("checksum mismatch (corrupted packet)")
        gap = (seq - self._next) % modulus
        if gap >= modulus // 2 or (gap and not self.resilient):
            expected = self._next % modulus
            raise _Bad(f"sequence number {seq}, expected {expected} (packets missing, repeated or reordered)")
        index = self._next + gap
        body = memoryview(data)[start : size - CRC_SIZE]
        try:
            if coded:
                semantic, acoustic = self._decode_coded(body, lengths, pairs)
            else:
                semantic = _layer(body, pairs, header.semantic_bits, header.semantic_vocab_size, "semantic")
                acoustic = None
                if self.layers == "both":
                    skip = packed_size(pairs, header.semantic_bits)
                    acoustic = _layer(body[skip:], pairs, header.acoustic_bits, header.acoustic_vocab_size, "acoustic")
        except _Bad as bad:
            raise _Bad(bad.reason, framed=True, index=index, size=size, final=final, pairs=pairs) from None
        self._in.consume(size)
        self._next = index + 1
        if final:
            self._finish(index, pairs)
        return Packet(index, index * header.packet_pairs, semantic, acoustic, final, coded)

    def _lengths(self, offset: int) -> tuple[tuple[int, int], int]:
        """The two layer lengths of a coded packet, read from ``offset`` (after the pair count):
        ``((semantic, acoustic), offset of the semantic layer)``; raises _Bad when truncated."""
        lengths = []
        for _ in range(2):
            if not self._in.fill(offset + 1):
                raise _Bad(f"truncated packet: stream ends {self._in.available} bytes into it")
            first = self._in.peek(offset + 1)[offset]
            if first < 0x80:
                lengths.append(first)
                offset += 1
                continue
            if not self._in.fill(offset + 2):
                raise _Bad(f"truncated packet: stream ends {self._in.available} bytes into it")
            length = int.from_bytes(self._in.peek(offset + 2)[offset:], "big") & 0x7FFF
            if length < 0x80:
                raise _Bad(f"layer length {length} written in two bytes (one byte below 128)")
            lengths.append(length)
            offset += 2
        return (lengths[0], lengths[1]), offset

    def _decode_coded(self, body: memoryview, lengths: tuple[int, int], pairs: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Decode the range-coded layers of a packet whose CRC passed; raises _Bad."""
        from semanticodec.bitstream.entropy import decode_layer

        assert self.tables is not None  # packets are coded only in version 2, whose tables resolve_tables found
        semantic_model, acoustic_model = self.tables.kernel_models
        ppc = self.header.pairs_per_column
        raw = np.frombuffer(body, np.uint8)
        semantic = np.zeros(pairs, np.int64)
        _check_coded(decode_layer(raw[: lengths[0]], pairs, semantic[:0], ppc, semantic_model, semantic), "semantic")
        if self.layers != "both":
            return semantic, None
        acoustic = np.zeros(pairs, np.int64)
        _check_coded(decode_layer(raw[lengths[0] :], pairs, semantic, ppc, acoustic_model, acoustic), "acoustic")
        return semantic, acoustic

    def _finish(self, index: int, pairs: int) -> None:
        self.total_pairs = index * self.header.packet_pairs + pairs
        problem = self.header.sample_count_problem(self.total_pairs)
        if problem is not None:
            raise BitstreamError(f"invalid header: {problem}")


def _check_coded(status: int, name: str) -> None:
    from semanticodec.bitstream.entropy import CORRUPT, OK

    if status == CORRUPT:
        raise _Bad(f"the {name} layer does not decode under the stream's entropy tables")
    if status != OK:
        raise _Bad(f"the {name} layer ends with a zero byte (not a canonical range-coded layer)")


def resolve_tables(header: Header, tables: TableSource) -> EntropyTables | None:
    """The entropy tables a version 2 ``header`` names (None for version 1), found through
    ``tables``; raises BitstreamError when they are not available or do not fit the header."""
    if header.version == 1:
        return None
    found = tables(header.table_id) if callable(tables) else tables
    name = header.table_id.hex()
    if found is None:
        raise BitstreamError(f"the stream is entropy coded with tables {name}, which are not available")
    if found.table_id != header.table_id:
        raise BitstreamError(f"the stream is entropy coded with tables {name}; the tables given are {found.table_id.hex()}")
    if not found.fits(header.token_rate, header.semantic_vocab_size, header.acoustic_vocab_size):
        raise BitstreamError(f"invalid header: entropy tables {name} are for another token rate or vocabulary")
    return found


def _layer(body: memoryview, pairs: int, bits: int, vocab: int, name: str) -> np.ndarray:
    """Unpack one layer and check its ids and zero padding; raises _Bad."""
    ids = unpack_bits(body, bits, pairs)
    if ids.size and ids.max() >= vocab:
        position = int(np.argmax(ids >= vocab))
        raise _Bad(f"{name} id {ids[position]} at pair {position} is outside [0, {vocab})")
    spare = packed_size(pairs, bits) * 8 - pairs * bits
    if spare and body[packed_size(pairs, bits) - 1] & ((1 << spare) - 1):
        raise _Bad(f"nonzero padding bits after the {name} layer")
    return ids
