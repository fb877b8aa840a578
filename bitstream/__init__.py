"""The .scdc bitstream: a packed, versioned, streamable container for SemantiCodec tokens.

Tokens are ``[T, 2]`` int64 arrays in the official layout: column 0 the semantic id in
[0, semantic_vocab), column 1 the acoustic id in [0, acoustic_vocab); row t is the t-th
token pair (at 100 tok/s, 8 consecutive rows are the 8 frequency patches of one 0.16 s
column; at 50 tok/s 4 rows make a 0.16 s column, at 25 tok/s 4 rows a 0.32 s column).

- ``encode`` / ``decode``: tokens <-> bytes; ``write_file`` / ``read_file``: tokens <-> path.
- ``StreamWriter`` / ``StreamReader``: incremental writing and reading over any binary file
  object (files, pipes, sockets), strict or resilient to damaged packets.
- ``scan``: integrity report of a whole stream (what ``semanticodec info`` prints).
- ``pack_bits`` / ``unpack_bits``: the vectorised fixed-width bit packer.

Every malformed stream raises ``BitstreamError`` (a ValueError). The byte format is
specified in FORMAT.md beside this file.
"""

from semanticodec.bitstream.bitpack import pack_bits, packed_size, unpack_bits
from semanticodec.bitstream.errors import BitstreamError
from semanticodec.bitstream.files import StreamInfo, decode, encode, read_file, read_stream, scan, write_file
from semanticodec.bitstream.header import (
    DEFAULT_PACKET_COLUMNS,
    MAGIC,
    TOKEN_RATES,
    UNSPECIFIED_MODEL,
    VERSION,
    Header,
    bits_for,
)
from semanticodec.bitstream.stream import Damage, Packet, StreamReader, StreamWriter, check_tokens

__all__ = [
    "DEFAULT_PACKET_COLUMNS",
    "MAGIC",
    "TOKEN_RATES",
    "UNSPECIFIED_MODEL",
    "VERSION",
    "BitstreamError",
    "Damage",
    "Header",
    "Packet",
    "StreamInfo",
    "StreamReader",
    "StreamWriter",
    "bits_for",
    "check_tokens",
    "decode",
    "encode",
    "pack_bits",
    "packed_size",
    "read_file",
    "read_stream",
    "scan",
    "unpack_bits",
    "write_file",
]
