"""The .scdc bitstream: a packed, versioned, streamable container for SemantiCodec tokens.

Tokens are ``[T, 2]`` int64 arrays in the official layout: column 0 the semantic id in
[0, semantic_vocab_size), column 1 the acoustic id in [0, acoustic_vocab_size); row t is the t-th
token pair (at 100 tok/s, 8 consecutive rows are the 8 frequency patches of one 0.16 s
column; at 50 tok/s 4 rows make a 0.16 s column, at 25 tok/s 4 rows a 0.32 s column).

- ``encode`` / ``decode``: tokens <-> bytes; ``write_file`` / ``read_file``: tokens <-> path.
- ``StreamWriter`` / ``StreamReader``: incremental writing and reading over any binary file
  object (files, pipes, sockets), strict or resilient to damaged packets.
- ``scan``: integrity report of a whole stream (what ``semanticodec info`` prints).
- ``pack_bits`` / ``unpack_bits``: the vectorised fixed-width bit packer.
- ``EntropyTables`` / ``learn_tables``: the statistics of a model's tokens; given to the
  writer, packets are range coded (format version 2) where that makes them smaller.
  ``learn_tables`` (:mod:`.learn`) is imported on first use: it loads numba, which reading and
  writing fixed-width streams never do.

Every malformed stream raises ``BitstreamError`` (a ValueError). The byte format is
specified in FORMAT.md beside this file.
"""

import importlib

from semanticodec.bitstream.bitpack import pack_bits, packed_size, unpack_bits
from semanticodec.bitstream.errors import BitstreamError
from semanticodec.bitstream.files import StreamInfo, decode, encode, packet_offsets, read_file, read_stream, scan, write_file
from semanticodec.bitstream.header import (
    DEFAULT_PACKET_COLUMNS,
    MAGIC,
    NO_TABLE,
    TOKEN_RATES,
    UNSPECIFIED_MODEL,
    VERSION,
    VERSIONS,
    Header,
    bits_for,
)
from semanticodec.bitstream.stream import Damage, Packet, StreamReader, StreamWriter, TableSource, check_tokens
from semanticodec.bitstream.tables import EntropyTables

__all__ = [
    "DEFAULT_PACKET_COLUMNS",
    "MAGIC",
    "NO_TABLE",
    "TOKEN_RATES",
    "UNSPECIFIED_MODEL",
    "VERSION",
    "VERSIONS",
    "BitstreamError",
    "Damage",
    "EntropyTables",
    "Header",
    "Packet",
    "StreamInfo",
    "StreamReader",
    "StreamWriter",
    "TableSource",
    "bits_for",
    "check_tokens",
    "decode",
    "encode",
    "learn_tables",
    "pack_bits",
    "packet_offsets",
    "packed_size",
    "read_file",
    "read_stream",
    "scan",
    "unpack_bits",
    "write_file",
]


def __getattr__(name: str):
    if name == "learn_tables":
        return importlib.import_module("semanticodec.bitstream.learn").learn_tables
    raise AttributeError(f"module 'semanticodec.bitstream' has no attribute {name!r}")
