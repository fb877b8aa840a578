"""Whole-stream reading and writing: bytes, paths, and the integrity scan behind ``info``."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np
from numpy.typing import ArrayLike

from semanticodec.bitstream.errors import BitstreamError
from semanticodec.bitstream.header import NO_TABLE, Header
from semanticodec.bitstream.stream import Damage, Layers, StreamReader, StreamWriter, TableSource
from semanticodec.bitstream.tables import EntropyTables


def encode(tokens: ArrayLike, header: Header, tables: EntropyTables | None = None) -> bytes:
    """The .scdc bytes of tokens ``[T, 2]`` (semantic, acoustic ids) under ``header``.

    With entropy ``tables``, each packet is range coded where that makes it smaller, under a
    header that names them (version 2); when no packet is, the stream is written without tables
    (version 1), so incompressible tokens cost what fixed width costs.
    Raises ValueError for tokens of the wrong shape or dtype or with ids outside the
    vocabularies, and for a known sample count that does not fit T (see
    ``Header.sample_count_problem``).
    """
    buffer = io.BytesIO()
    written = header if tables is None or header.table_id != NO_TABLE else replace(header, table_id=tables.table_id)
    writer = StreamWriter(buffer, written, tables)
    writer.write(tokens)
    writer.close()
    if tables is not None and not writer.coded_packets:
        return encode(tokens, replace(header, table_id=NO_TABLE))
    return buffer.getvalue()


def read_stream(
    fileobj: BinaryIO, layers: Layers = "both", model_id: bytes | None = None, tables: TableSource = None
) -> tuple[Header, np.ndarray]:
    """Read a whole stream strictly: ``(header, tokens)``.

    tokens: ``[T, 2]`` int64 (semantic, acoustic), or ``[T]`` semantic ids when
    ``layers="semantic"`` (the acoustic layer is then not unpacked). With ``model_id``,
    a stream from another model is refused (see ``Header.check_model``). ``tables``: where
    the entropy tables of a version 2 stream come from (see ``StreamReader``). Any damage,
    and any data after the final packet, raises BitstreamError.
    """
    reader = StreamReader(fileobj, layers=layers, tables=tables)
    if model_id is not None:
        reader.header.check_model(model_id)
    if layers == "semantic":
        parts = [packet.semantic for packet in reader]
        tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    else:
        parts = [packet.tokens for packet in reader]
        tokens = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    if not reader.at_end():
        raise BitstreamError(f"trailing data after the final packet at byte {reader.bytes_read}")
    return reader.header, tokens


def decode(
    data: bytes | bytearray | memoryview, layers: Layers = "both", model_id: bytes | None = None,
    tables: TableSource = None,
) -> tuple[Header, np.ndarray]:
    """``read_stream`` over bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data must be bytes, got {type(data).__name__}")
    return read_stream(io.BytesIO(data), layers, model_id, tables)


def packet_offsets(data: bytes | bytearray | memoryview, tables: TableSource = None) -> list[int]:
    """Byte offsets of every packet of an intact stream, then the stream's length (the packets
    are ``data[offsets[k]:offsets[k + 1]]``). Raises BitstreamError when the stream is damaged."""
    reader = StreamReader(io.BytesIO(data), tables=tables)
    offsets = [reader.bytes_read]
    offsets += [reader.bytes_read for _ in reader]
    if not reader.at_end():
        raise BitstreamError(f"trailing data after the final packet at byte {reader.bytes_read}")
    return offsets


def read_file(
    path: str | os.PathLike[str], layers: Layers = "both", model_id: bytes | None = None, tables: TableSource = None
) -> tuple[Header, np.ndarray]:
    """``read_stream`` over a file, read in bounded chunks."""
    with open(path, "rb") as file:
        return read_stream(file, layers, model_id, tables)


def write_file(
    path: str | os.PathLike[str], tokens: ArrayLike, header: Header, overwrite: bool = True,
    tables: EntropyTables | None = None,
) -> int:
    """Write tokens ``[T, 2]`` to ``path`` atomically (temporary file + rename), entropy coded
    with ``tables`` as ``encode`` does; returns its size.

    With ``overwrite=False`` an existing file raises FileExistsError.
    """
    from semanticodec.atomic import atomic_write

    data = encode(tokens, header, tables)
    with atomic_write(path, overwrite=overwrite) as file:
        file.write(data)
    return len(data)


@dataclass(frozen=True)
class StreamInfo:
    """What a resilient read of a whole stream found.

    size: bytes in the stream. packets: packets read intact, coded_packets: how many of them
    were range coded. pairs: token pairs the stream declares (None when its final packet is
    missing). damage: problems found, in order (empty: intact). tables: the entropy tables
    the stream names (None in version 1).
    """

    header: Header
    size: int
    packets: int
    pairs: int | None
    damage: tuple[Damage, ...]
    coded_packets: int = 0
    tables: EntropyTables | None = None

    @property
    def ok(self) -> bool:
        """Whether the stream is intact."""
        return not self.damage and self.pairs is not None

    @property
    def token_seconds(self) -> float | None:
        """Audio duration the tokens cover: pairs / pairs_per_second."""
        return None if self.pairs is None else self.pairs / self.header.pairs_per_second

    @property
    def seconds(self) -> float | None:
        """Original audio duration when the header knows it, else the tokens' duration."""
        return self.header.duration or self.token_seconds

    @property
    def actual_bitrate(self) -> float | None:
        """size * 8 / seconds, in bit/s."""
        seconds = self.seconds
        return self.size * 8 / seconds if seconds else None

    @property
    def overhead(self) -> float | None:
        """Bytes beyond the nominal payload (header, framing, padding), over the nominal payload
        bytes; negative when entropy coding saved more than the container costs."""
        if not self.pairs:
            return None
        payload = self.pairs * (self.header.semantic_bits + self.header.acoustic_bits) / 8
        return (self.size - payload) / payload


def scan(fileobj: BinaryIO, tables: TableSource = None) -> StreamInfo:
    """Read a whole stream resiliently, keeping no tokens, and report its integrity.

    Raises BitstreamError only when the header itself is unreadable or names entropy tables
    that ``tables`` does not provide.
    """
    reader = StreamReader(fileobj, resilient=True, tables=tables)
    packets = coded = 0
    for packet in reader:
        packets += 1
        coded += packet.coded
    damage = list(reader.damage)
    offset = reader.bytes_read
    trailing = reader.drain()
    if trailing and reader.total_pairs is not None:  # complete
        after_final = reader.total_pairs // reader.header.packet_pairs + 1
        damage.append(Damage(offset, after_final, 0, f"{trailing} bytes of trailing data after the final packet"))
    return StreamInfo(reader.header, offset + trailing, packets, reader.total_pairs, tuple(damage), coded, reader.tables)
