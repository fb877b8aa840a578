"""The packet layout of a .scdc stream: sync marker, flags, sequence numbers and sizes.

Packet layout (FORMAT.md §3), big-endian::

    0  2  sync marker D3 C3
    2  2  bit 15: FINAL flag; version 1: bits 14..0 sequence number mod 32768;
          version 2: bit 14 CODED flag, bits 13..0 sequence number mod 16384
    4  2  pair count n, present only in the FINAL packet (0 <= n < packet_pairs)
    fixed width (CODED clear):
    .. S  semantic layer: n ids of semantic_bits bits, MSB-first, zero-padded to a byte
    .. A  acoustic layer: n ids of acoustic_bits bits, MSB-first, zero-padded to a byte
    entropy coded (CODED set, FORMAT.md §8):
    .. 1-2 S, 1-2 A: layer lengths (one byte below 128, else two bytes with the top bit set)
    .. S  semantic layer, range coded;  .. A  acoustic layer, range coded
    .. 2  CRC-16 of every byte after the sync marker and before the CRC

Full packets hold ``header.packet_pairs`` pairs and are never final; the stream ends with
exactly one FINAL packet holding the remaining 0 .. packet_pairs - 1 pairs. A writer with
entropy tables codes a packet only when that makes it smaller than its fixed-width form.

The writer and reader (:mod:`.stream`) and the resynchronisation search (:mod:`.resync`) read
the layout from here.
"""

from __future__ import annotations

from typing import overload

import numpy as np

from semanticodec.bitstream.bitpack import packed_size
from semanticodec.bitstream.header import CRC_SIZE, Header

SYNC = b"\xd3\xc3"
FINAL_FLAG = 0x8000
CODED_FLAG = 0x4000
"""Version 2: the packet's layers are range coded."""


def seq_modulus(header: Header) -> int:
    """Sequence numbers count modulo this: 32768 in version 1, 16384 in version 2."""
    return 0x8000 if header.version == 1 else 0x4000


@overload
def packet_size(header: Header, pairs: int, final: bool) -> int: ...


@overload
def packet_size(header: Header, pairs: np.ndarray, final: bool | np.ndarray) -> np.ndarray: ...


def packet_size(header: Header, pairs: int | np.ndarray, final: bool | np.ndarray) -> int | np.ndarray:
    """Bytes of a fixed-width packet holding ``pairs`` token pairs, framing included (a coded
    packet is always smaller); element-wise for integer and boolean arrays of candidate
    packets, as resynchronisation checks them."""
    framing = len(SYNC) + 2 + 2 * final + CRC_SIZE
    return framing + packed_size(pairs, header.semantic_bits) + packed_size(pairs, header.acoustic_bits)
