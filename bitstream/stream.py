"""Incremental .scdc writing and reading over binary file objects (files, pipes, sockets).

Packet layout (FORMAT.md §3), big-endian::

    0  2  sync marker D3 C3
    2  2  bit 15: FINAL flag; bits 14..0: sequence number mod 32768
    4  2  pair count n, present only in the FINAL packet (0 <= n < packet_pairs)
    .. S  semantic layer: n ids of semantic_bits bits, MSB-first, zero-padded to a byte
    .. A  acoustic layer: n ids of acoustic_bits bits, MSB-first, zero-padded to a byte
    .. 2  CRC-16 of every byte after the sync marker and before the CRC

Full packets hold ``header.packet_pairs`` pairs and are never final; the stream ends with
exactly one FINAL packet holding the remaining 0 .. packet_pairs - 1 pairs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

import numpy as np
from numpy.typing import ArrayLike

from semanticodec.bitstream.bitpack import pack_bits, packed_size, unpack_bits
from semanticodec.bitstream.errors import BitstreamError
from semanticodec.bitstream.header import CRC_SIZE, Header, crc16, read_header

SYNC = b"\xd3\xc3"
FINAL_FLAG = 0x8000
SEQ_MODULUS = 0x8000
MAX_SEQ_GAP = SEQ_MODULUS // 2
"""A resynchronised packet is accepted when it lies less than this many packets ahead."""
DEFAULT_CHUNK = 1 << 16

Layers = Literal["both", "semantic"]


def packet_size(header: Header, pairs: int | np.ndarray, final: bool | np.ndarray) -> int | np.ndarray:
    """Bytes of a packet holding ``pairs`` token pairs, framing included (element-wise for
    integer and boolean arrays of candidate packets, as resynchronisation checks them)."""
    framing = len(SYNC) + 2 + 2 * final + CRC_SIZE
    return framing + packed_size(pairs, header.semantic_bits) + packed_size(pairs, header.acoustic_bits)


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
    for column, (name, vocab) in enumerate((("semantic", header.semantic_vocab), ("acoustic", header.acoustic_vocab))):
        ids = array[:, column]
        bad = np.flatnonzero((ids < 0) | (ids >= vocab))
        if bad.size:
            raise ValueError(f"{name} id {ids[bad[0]]} at position {bad[0]} is outside [0, {vocab})")
    return array.astype(np.int64, copy=False)


def encode_packet(header: Header, seq: int, tokens: np.ndarray, final: bool) -> bytes:
    """One packet for checked tokens ``[n, 2]`` int64 (n == packet_pairs unless final)."""
    flags = (seq % SEQ_MODULUS) | (FINAL_FLAG if final else 0)
    parts = [struct.pack(">H", flags)]
    if final:
        parts.append(struct.pack(">H", len(tokens)))
    parts.append(pack_bits(tokens[:, 0], header.semantic_bits))
    parts.append(pack_bits(tokens[:, 1], header.acoustic_bits))
    body = b"".join(parts)
    return SYNC + body + struct.pack(">H", crc16(body))


class StreamWriter:
    """Write a .scdc stream to a binary file object as tokens arrive.

    The header is written at once; ``write`` takes token chunks ``[n, 2]`` of any n and
    writes each packet as soon as it is full; ``close`` writes the final packet with the
    remaining pairs and flushes. The file object is not closed. Used as a context manager,
    the final packet is written only when the block ends without an exception, so an
    interrupted stream stays detectably truncated.
    """

    def __init__(self, fileobj: BinaryIO, header: Header) -> None:
        if not callable(getattr(fileobj, "write", None)):
            raise ValueError(f"StreamWriter needs a binary file object with write(), got {type(fileobj).__name__}")
        if not isinstance(header, Header):
            raise ValueError(f"header must be a bitstream.Header, got {type(header).__name__}")
        self.header = header
        self.pairs_written = 0
        self.closed = False
        self._file = fileobj
        self._seq = 0
        self._pending = np.zeros((0, 2), dtype=np.int64)
        self._emit(header.to_bytes())

    def write(self, tokens: ArrayLike) -> None:
        """Append token pairs ``[n, 2]`` (semantic, acoustic ids); writes every full packet."""
        if self.closed:
            raise ValueError("write to a closed StreamWriter")
        chunk = check_tokens(tokens, self.header)
        pending = np.concatenate([self._pending, chunk]) if len(self._pending) else chunk
        size = self.header.packet_pairs
        full = len(pending) // size
        packets = [
            encode_packet(self.header, self._seq + i, pending[i * size : (i + 1) * size], False) for i in range(full)
        ]
        self._seq += full
        self._pending = pending[full * size :].copy()
        self.pairs_written += len(chunk)
        self._emit(b"".join(packets))

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
        self._emit(encode_packet(self.header, self._seq, self._pending, True))
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
    final: whether this is the last packet of the stream.
    """

    index: int
    start: int
    semantic: np.ndarray
    acoustic: np.ndarray | None
    final: bool

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
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        *,
        resilient: bool = False,
        layers: Layers = "both",
        on_damage: Callable[[Damage], None] | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        if layers not in ("both", "semantic"):
            raise ValueError(f"layers must be 'both' or 'semantic', got {layers!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        if not callable(getattr(fileobj, "read", None)):
            raise ValueError(f"StreamReader needs a binary file object with read(), got {type(fileobj).__name__}")
        self._in = _Input(fileobj, chunk_size)
        self.header = read_header(self._in.read_exact)
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
        from semanticodec.bitstream import resync  # it reads the packet layout of this module
        while True:
            index = resync.next_candidate(self._in.peek(self._in.available), self.header, self._next, MAX_SEQ_GAP)
            if index >= 0:
                self._in.consume(index)
                return True
            self._in.consume(max(0, self._in.available - (len(SYNC) - 1)))
            if not self._in.fill(self._in.available + 1):
                return False

    def _packet(self) -> Packet:
        """Parse the packet at the current position and consume it, or raise _Bad (consuming nothing).

        Strict mode accepts only the expected sequence number; resilient mode accepts any up
        to MAX_SEQ_GAP - 1 packets ahead (the packets in between are lost).
        """
        header = self.header
        if not self._in.fill(4):
            raise _Bad(f"truncated packet: stream ends {self._in.available} bytes into it")
        head = self._in.peek(4)
        if head[:2] != SYNC:
            raise _Bad(f"sync marker missing (found {head[:2].hex(' ')})")
        flags = int.from_bytes(head[2:4], "big")
        final = bool(flags & FINAL_FLAG)
        seq = flags & (SEQ_MODULUS - 1)
        pairs = header.packet_pairs
        if final:
            if not self._in.fill(6):
                raise _Bad(f"truncated packet: stream ends {self._in.available} bytes into it")
            pairs = int.from_bytes(self._in.peek(6)[4:6], "big")
            if pairs >= header.packet_pairs:
                raise _Bad(f"final packet claims {pairs} pairs, must be fewer than {header.packet_pairs}")
        size = packet_size(header, pairs, final)
        if not self._in.fill(size):
            raise _Bad(f"truncated packet: stream ends {self._in.available} of {size} bytes into it")
        data = self._in.peek(size)
        if crc16(data[2:-CRC_SIZE]) != int.from_bytes(data[-CRC_SIZE:], "big"):
            raise _Bad("checksum mismatch (corrupted packet)")
        gap = (seq - self._next) % SEQ_MODULUS
        if gap >= MAX_SEQ_GAP or (gap and not self.resilient):
            expected = self._next % SEQ_MODULUS
            raise _Bad(f"sequence number {seq}, expected {expected} (packets missing, repeated or reordered)")
        index = self._next + gap
        body = memoryview(data)[(6 if final else 4) :]
        try:
            semantic = _layer(body, pairs, header.semantic_bits, header.semantic_vocab, "semantic")
            acoustic = None
            if self.layers == "both":
                skip = packed_size(pairs, header.semantic_bits)
                acoustic = _layer(body[skip:], pairs, header.acoustic_bits, header.acoustic_vocab, "acoustic")
        except _Bad as bad:
            raise _Bad(bad.reason, framed=True, index=index, size=size, final=final, pairs=pairs) from None
        self._in.consume(size)
        self._next = index + 1
        if final:
            self._finish(index, pairs)
        return Packet(index, index * header.packet_pairs, semantic, acoustic, final)

    def _finish(self, index: int, pairs: int) -> None:
        self.total_pairs = index * self.header.packet_pairs + pairs
        problem = self.header.sample_count_problem(self.total_pairs)
        if problem is not None:
            raise BitstreamError(f"invalid header: {problem}")


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
