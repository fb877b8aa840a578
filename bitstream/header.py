"""The .scdc stream header: fields, validation, byte layout (FORMAT.md §2).

All multi-byte integers are big-endian. Layout (47 bytes + metadata in version 1, 55 in
version 2)::

    0   4  magic "SCDC"
    4   1  format version: 1 (fixed-width packets only) or 2 (names entropy tables)
    5   1  token rate: 25, 50 or 100 tokens/s (both streams counted)
    6   1  packet_columns: token columns per full packet, 1..255
    7   4  semantic vocabulary size, 2..2**20
    11  4  acoustic vocabulary size, 2..2**20
    15  16 model id (all zero: unspecified)
    31  4  original sample rate in Hz, 1000..768000
    35  8  original sample count (0: unknown)
    43  8  version 2 only: table id, the entropy tables of the coded packets (never all zero)
    43/51  2  metadata length M in bytes
    ..  M  metadata: UTF-8 "key=value" lines joined by "\\n"
    ..  2  CRC-16 of every header byte before it
"""

from __future__ import annotations

import binascii
import operator
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

from semanticodec.bitstream.errors import BitstreamError
from semanticodec.constants import COLUMN_SECONDS, MAX_SAMPLE_RATE, PAIRS_PER_COLUMN, TOKEN_RATES
from semanticodec.deprecation import renamed_attribute, renamed_keywords

MAGIC = b"SCDC"
VERSION = 2
"""The newest format version: streams that name entropy tables. A stream without tables is
written as version 1, byte for byte the format before entropy coding."""
VERSIONS = (1, 2)
DEFAULT_PACKET_COLUMNS = {100: 32, 50: 64, 25: 64}
"""Default packet length: 256 token pairs, i.e. 5.12 s / 10.24 s / 20.48 s at 100 / 50 / 25 tok/s."""
MAX_PACKET_COLUMNS = 255
MIN_VOCAB = 2
MAX_VOCAB = 1 << 20
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_COUNT = (1 << 53) - 1
MAX_METADATA_BYTES = 0xFFFF
MAX_KEY_LENGTH = 64
MODEL_ID_BYTES = 16
UNSPECIFIED_MODEL = bytes(MODEL_ID_BYTES)
TABLE_ID_BYTES = 8
NO_TABLE = bytes(TABLE_ID_BYTES)
"""Table id of a stream whose packets are all fixed width (a version 1 stream)."""

_COMMON = struct.Struct(">4sBBBII16sIQ")
"""Header fields up to the sample count, the same in every version."""
FIXED_SIZE = _COMMON.size + 2
"""Bytes of a version 1 header before its metadata: 45 (version 2 adds the 8-byte table id)."""
CRC_SIZE = 2
_INT_FIELDS = ("token_rate", "semantic_vocab_size", "acoustic_vocab_size", "sample_count", "sample_rate", "packet_columns")
_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,%d}" % MAX_KEY_LENGTH)


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)."""
    return binascii.crc_hqx(data, 0xFFFF)


def bits_for(vocab: int) -> int:
    """ceil(log2(vocab)): the bits one id of a ``vocab``-sized vocabulary takes (vocab >= 2)."""
    return (vocab - 1).bit_length()


def _metadata_problem(metadata: Mapping[str, str]) -> str | None:
    for key, value in metadata.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            return f"metadata key {key!r} must be 1-{MAX_KEY_LENGTH} characters of A-Z a-z 0-9 _ . -"
        if not isinstance(value, str) or "\n" in value or "\x00" in value:
            return f"metadata value of {key!r} must be a string without newline or NUL"
    if len(encode_metadata(metadata)) > MAX_METADATA_BYTES:
        return f"metadata takes more than {MAX_METADATA_BYTES} bytes"
    return None


def encode_metadata(metadata: Mapping[str, str]) -> bytes:
    """The metadata block: "key=value" lines joined by newlines, UTF-8."""
    return "\n".join(f"{key}={value}" for key, value in metadata.items()).encode("utf-8")


def decode_metadata(block: bytes) -> dict[str, str]:
    """Parse a metadata block; raises BitstreamError naming the problem."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BitstreamError(f"invalid header: metadata is not UTF-8 ({error.reason} at byte {error.start})") from None
    metadata: dict[str, str] = {}
    if not text:
        return metadata
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if not sep or not _KEY.fullmatch(key) or "\x00" in value:
            raise BitstreamError(f"invalid header: malformed metadata line {line[:80]!r}")
        if key in metadata:
            raise BitstreamError(f"invalid header: duplicate metadata key {key!r}")
        metadata[key] = value
    return metadata


@dataclass(frozen=True)
class Header:
    """What a .scdc stream declares about its tokens.

    token_rate: tokens per second counting both streams (25, 50, 100); pairs/s = rate / 2.
    semantic_vocab_size, acoustic_vocab_size: vocabulary sizes (ids lie in [0, size)).
    model_id: 16 raw bytes naming the model that made the tokens (zeros: unspecified).
    sample_count, sample_rate: length of the original audio in samples at its own rate in Hz
    (sample_count 0: unknown).
    packet_columns: token columns per full packet (None: DEFAULT_PACKET_COLUMNS[token_rate]).
    metadata: optional text pairs (keys: 1-64 of A-Z a-z 0-9 _ . -; values without newline/NUL).
    table_id: 8 bytes naming the entropy tables of the coded packets (``EntropyTables.table_id``);
    NO_TABLE (all zero): every packet is fixed width and the header is written as version 1.
    Invalid values raise ValueError.
    """

    token_rate: int
    semantic_vocab_size: int
    acoustic_vocab_size: int = 8192
    model_id: bytes = UNSPECIFIED_MODEL
    sample_count: int = 0
    sample_rate: int = 16000
    packet_columns: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    table_id: bytes = NO_TABLE

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if hasattr(value, "__index__") and not isinstance(value, (bool, int)):
                object.__setattr__(self, name, operator.index(value))
        if self.packet_columns is None and self.token_rate in TOKEN_RATES:
            object.__setattr__(self, "packet_columns", DEFAULT_PACKET_COLUMNS[self.token_rate])
        for name in ("model_id", "table_id"):
            if isinstance(getattr(self, name), bytearray):
                object.__setattr__(self, name, bytes(getattr(self, name)))
        if isinstance(self.metadata, Mapping):
            object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        problem = self._problem()
        if problem is not None:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        if type(self.token_rate) is not int or self.token_rate not in TOKEN_RATES:
            return f"token_rate must be one of {TOKEN_RATES}, got {self.token_rate!r}"
        for name in _INT_FIELDS[1:]:
            value = getattr(self, name)
            if type(value) is not int:
                return f"{name} must be an int, got {type(value).__name__}"
        for name in ("semantic_vocab_size", "acoustic_vocab_size"):
            value = getattr(self, name)
            if not MIN_VOCAB <= value <= MAX_VOCAB:
                return f"{name} must be in {MIN_VOCAB}..{MAX_VOCAB}, got {value}"
        if not isinstance(self.model_id, bytes) or len(self.model_id) != MODEL_ID_BYTES:
            return f"model_id must be {MODEL_ID_BYTES} bytes, got {self.model_id!r}"
        if not isinstance(self.table_id, bytes) or len(self.table_id) != TABLE_ID_BYTES:
            return f"table_id must be {TABLE_ID_BYTES} bytes, got {self.table_id!r}"
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            return f"sample_rate must be in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {self.sample_rate}"
        if not 0 <= self.sample_count <= MAX_SAMPLE_COUNT:
            return f"sample_count must be in 0..2**53-1, got {self.sample_count}"
        if not 1 <= cast(int, self.packet_columns) <= MAX_PACKET_COLUMNS:  # an int: checked above
            return f"packet_columns must be in 1..{MAX_PACKET_COLUMNS}, got {self.packet_columns}"
        if not isinstance(self.metadata, Mapping):
            return f"metadata must be a mapping of str to str, got {type(self.metadata).__name__}"
        return _metadata_problem(self.metadata)

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    semantic_vocab = renamed_attribute("Header", "semantic_vocab", "semantic_vocab_size")
    acoustic_vocab = renamed_attribute("Header", "acoustic_vocab", "acoustic_vocab_size")

    @property
    def version(self) -> int:
        """Format version of the encoded header: 2 when it names entropy tables, else 1."""
        return 1 if self.table_id == NO_TABLE else 2

    @property
    def semantic_bits(self) -> int:
        """Bits per semantic id: ceil(log2(semantic_vocab_size))."""
        return bits_for(self.semantic_vocab_size)

    @property
    def acoustic_bits(self) -> int:
        """Bits per acoustic id: ceil(log2(acoustic_vocab_size))."""
        return bits_for(self.acoustic_vocab_size)

    @property
    def pairs_per_second(self) -> float:
        """Token pairs (semantic, acoustic) per second of audio: token_rate / 2."""
        return self.token_rate / 2

    @property
    def pairs_per_column(self) -> int:
        """Token pairs in one token column (8 at 100 tok/s, else 4)."""
        return PAIRS_PER_COLUMN[self.token_rate]

    @property
    def packet_pairs(self) -> int:
        """Token pairs in a full packet: packet_columns * pairs_per_column."""
        return cast(int, self.packet_columns) * self.pairs_per_column  # never None once constructed

    @property
    def packet_seconds(self) -> float:
        """Audio duration of a full packet in seconds."""
        return cast(int, self.packet_columns) * COLUMN_SECONDS[self.token_rate]

    @property
    def nominal_bitrate(self) -> float:
        """Payload bit/s: pairs/s * (semantic_bits + acoustic_bits), e.g. 1350 at 100 tok/s, 16384 + 8192."""
        return self.pairs_per_second * (self.semantic_bits + self.acoustic_bits)

    @property
    def duration(self) -> float | None:
        """Original audio duration in seconds (sample_count / sample_rate), None when unknown."""
        return self.sample_count / self.sample_rate if self.sample_count else None

    @property
    def size(self) -> int:
        """Encoded header length in bytes."""
        table = TABLE_ID_BYTES if self.version == 2 else 0
        return FIXED_SIZE + table + len(encode_metadata(self.metadata)) + CRC_SIZE

    def sample_count_problem(self, pairs: int) -> str | None:
        """Why ``sample_count`` cannot belong to a stream of ``pairs`` token pairs, or None.

        A known sample count must lie within two token columns of the duration the tokens
        cover: |sample_count / sample_rate - pairs / pairs_per_second| <= 2 * column duration.
        (The official encoder's tokens outlast the audio by at most one column plus one
        pair: 0.16 s of rounding up, and one more pair from float error in the ceil.)
        """
        if not self.sample_count:
            return None
        # Exact integer form of the rule: both sides multiplied by token_rate * sample_rate.
        gap = abs(self.sample_count * self.token_rate - 2 * pairs * self.sample_rate)
        if gap > 4 * self.pairs_per_column * self.sample_rate:
            seconds = pairs / self.pairs_per_second
            return (
                f"sample count {self.sample_count} at {self.sample_rate} Hz does not match "
                f"{pairs} token pairs ({seconds:.2f} s)"
            )
        return None

    def check_model(self, model_id: bytes, allow_unspecified: bool = True) -> None:
        """Raise BitstreamError unless the stream was made by ``model_id``.

        A stream whose model id is all zeros (unspecified) passes when ``allow_unspecified``.
        """
        if self.model_id == model_id or (allow_unspecified and self.model_id == UNSPECIFIED_MODEL):
            return
        raise BitstreamError(
            f"tokens come from model {self.model_id.hex()}, this decoder is model {bytes(model_id).hex()}"
        )

    def to_bytes(self) -> bytes:
        """The encoded header, CRC included."""
        block = encode_metadata(self.metadata)
        common = _COMMON.pack(
            MAGIC, self.version, self.token_rate, self.packet_columns, self.semantic_vocab_size, self.acoustic_vocab_size,
            self.model_id, self.sample_rate, self.sample_count,
        )
        table = self.table_id if self.version == 2 else b""
        body = common + table + struct.pack(">H", len(block)) + block
        return body + struct.pack(">H", crc16(body))


Header.__init__ = renamed_keywords("Header", semantic_vocab="semantic_vocab_size", acoustic_vocab="acoustic_vocab_size")(Header.__init__)  # type: ignore[method-assign]


def read_header(read: Callable[[int], bytes]) -> Header:
    """Parse a header with ``read(n)``, which returns n bytes or fewer at end of stream.

    Raises BitstreamError naming the problem: empty stream, wrong magic, unsupported
    version, truncation, checksum mismatch, invalid field.
    """
    start = read(len(MAGIC))
    if not start:
        raise BitstreamError("empty stream: no .scdc header")
    if start != MAGIC[: len(start)]:
        raise BitstreamError(f"not an .scdc stream: magic {start!r}, expected {MAGIC!r}")
    if len(start) < len(MAGIC):
        raise BitstreamError(f"truncated header: stream ends after {len(start)} bytes")
    version = read(1)
    if not version:
        raise BitstreamError("truncated header: stream ends after 4 bytes")
    if version[0] not in VERSIONS:
        raise BitstreamError(f"unsupported format version {version[0]} (this reader supports {', '.join(map(str, VERSIONS))})")
    size = FIXED_SIZE + (TABLE_ID_BYTES if version[0] == 2 else 0)
    fixed = start + version + read(size - 5)
    if len(fixed) < size:
        raise BitstreamError(f"truncated header: stream ends after {len(fixed)} bytes")
    _, _, token_rate, columns, sem_vocab, ac_vocab, model_id, sample_rate, sample_count = _COMMON.unpack_from(fixed)
    table_id = fixed[_COMMON.size : size - 2] if version[0] == 2 else NO_TABLE
    meta_len = int.from_bytes(fixed[-2:], "big")
    tail = read(meta_len + CRC_SIZE)
    if len(tail) < meta_len + CRC_SIZE:
        total = size + meta_len + CRC_SIZE
        raise BitstreamError(f"truncated header: stream ends after {size + len(tail)} of {total} header bytes")
    block, crc_bytes = tail[:meta_len], tail[meta_len:]
    if crc16(fixed + block) != int.from_bytes(crc_bytes, "big"):
        raise BitstreamError("header checksum mismatch: the header is corrupted")
    if version[0] == 2 and table_id == NO_TABLE:
        raise BitstreamError("invalid header: a version 2 header must name entropy tables (its table id is zero)")
    metadata = decode_metadata(block)
    try:
        return Header(
            token_rate=token_rate, semantic_vocab_size=sem_vocab, acoustic_vocab_size=ac_vocab, model_id=model_id,
            sample_count=sample_count, sample_rate=sample_rate, packet_columns=columns, metadata=metadata,
            table_id=table_id,
        )
    except ValueError as error:
        raise BitstreamError(f"invalid header: {error}") from None
