"""PCM audio streams over pipes (no seeking, length possibly unknown): reading a WAV stream or
raw interleaved PCM block by block, and the header of a 16-bit WAV stream being written.

Pipe writers (sox, ffmpeg, arecord) cannot go back to fill in the RIFF sizes, so they leave
the data size at 0, ``0xFFFFFFFF`` or a large placeholder; such a ``data`` chunk is read up
to the end of the stream. RF64 (64-bit sizes in a ``ds64`` chunk) is read as well.
Sample formats: integer PCM of 8 (unsigned), 16, 24 or 32 bits, IEEE float of 32 or 64
bits, plain or as ``WAVE_FORMAT_EXTENSIBLE``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

MAGICS = (b"RIFF", b"RF64")
"""First four bytes of a WAV stream."""

RAW_FORMATS = {"s16le": "<i2", "s32le": "<i4", "f32le": "<f4"}
"""Raw PCM sample formats (little-endian, interleaved channels) and their numpy dtypes."""

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_UNKNOWN_SIZE = 0x7FFFF000
"""A ``data`` size of 0 or at least this is a pipe writer's placeholder: read to the end."""


class WavStreamError(ValueError):
    """The stream is not a WAV this reader can decode (names what is wrong)."""


@dataclass(frozen=True)
class WavFormat:
    """``sample_rate`` in Hz, ``channels``, ``frames`` (0: unknown, read to the end) and the
    sample encoding: ``float`` or integer of ``bits`` bits."""

    sample_rate: int
    channels: int
    bits: int
    is_float: bool
    frames: int

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.bits // 8


def open_wav_stream(
    read: Callable[[int], bytes], prefix: bytes = b"", block_seconds: float = 1.0
) -> tuple[WavFormat, Iterator[np.ndarray]]:
    """Parse the header of a WAV stream and iterate over its samples.

    Args:
        read: ``read(n)`` returning up to ``n`` bytes (``b""`` at the end), e.g. ``sys.stdin.buffer.read``.
        prefix: bytes already taken from the stream (e.g. the magic read to detect the format).
        block_seconds: audio per yielded block (the last may be shorter).

    Returns:
        The format and an iterator of float32 blocks ``[channels, n]`` in [-1, 1].
    """
    source = _Source(read, prefix)
    riff = source.exact(12, "the RIFF header")
    if riff[:4] not in MAGICS or riff[8:12] != b"WAVE":
        raise WavStreamError("standard input is not a WAV stream (no RIFF/RF64 ... WAVE header)")
    rf64_data_size = None
    fmt = None
    while True:
        chunk_id, size = struct.unpack("<4sI", source.exact(8, "a WAV chunk header"))
        if chunk_id == b"ds64":
            body = source.exact(size + size % 2, "the ds64 chunk")
            if size < 24:
                raise WavStreamError(f"WAV ds64 chunk is {size} bytes, needs >= 24")
            rf64_data_size = struct.unpack("<Q", body[8:16])[0]
        elif chunk_id == b"fmt ":
            fmt = _parse_fmt(source.exact(size + size % 2, "the WAV fmt chunk")[:size])
        elif chunk_id == b"data":
            break
        else:
            source.skip(size + size % 2, f"the WAV {chunk_id!r} chunk")
    if fmt is None:
        raise WavStreamError("WAV stream has no fmt chunk before its data")
    rf64 = riff[:4] == b"RF64" and size == 0xFFFFFFFF and rf64_data_size is not None
    if rf64:
        size = rf64_data_size
    known = rf64 or 0 < size < _UNKNOWN_SIZE
    data_bytes = size - size % fmt.frame_bytes if known else None
    info = replace(fmt, frames=0 if data_bytes is None else data_bytes // fmt.frame_bytes)
    return info, _blocks(source, info, data_bytes, max(1, int(info.sample_rate * block_seconds)))


def raw_pcm_blocks(
    read: Callable[[int], bytes], sample_format: str, channels: int, sample_rate: int, prefix: bytes = b"", block_seconds: float = 1.0
) -> Iterator[np.ndarray]:
    """Blocks ``[channels, n]`` of raw interleaved PCM (``sample_format`` one of :data:`RAW_FORMATS`)
    read with ``read(n)`` after the bytes of ``prefix``; integer samples are returned as read
    (the caller scales them). A stream that ends inside a sample frame raises WavStreamError."""
    if sample_format not in RAW_FORMATS:
        raise WavStreamError(f"raw sample format must be one of {', '.join(RAW_FORMATS)}, got {sample_format!r}")
    if not 1 <= channels <= 64:
        raise WavStreamError(f"raw audio must have 1..64 channels, got {channels}")
    dtype = np.dtype(RAW_FORMATS[sample_format])
    frame = dtype.itemsize * channels
    block = max(1, int(sample_rate * block_seconds)) * frame
    pending = prefix
    while data := read(block):
        data = pending + data
        usable = len(data) - len(data) % frame
        pending = data[usable:]
        yield np.frombuffer(data[:usable], dtype).reshape(-1, channels).T
    if pending:
        raise WavStreamError(f"standard input ends inside a sample frame ({len(pending)} stray bytes)")


def wav_stream_header(sample_rate: int, frames: int | None) -> bytes:
    """Header of a mono 16-bit PCM WAV stream of ``frames`` samples; the sizes are 0xFFFFFFFF
    (read to the end, as pipe readers do) when the length is unknown or does not fit the 32-bit
    size fields (2^31 samples or more)."""
    if frames is not None and 36 + 2 * frames > 0xFFFFFFFF:
        frames = None
    data = 0xFFFFFFFF if frames is None else 2 * frames
    riff = 0xFFFFFFFF if frames is None else 36 + data
    fmt = struct.pack("<HHIIHH", _PCM, 1, sample_rate, 2 * sample_rate, 2, 16)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data)


def _parse_fmt(body: bytes) -> WavFormat:
    if len(body) < 16:
        raise WavStreamError(f"WAV fmt chunk is {len(body)} bytes, needs >= 16")
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 26:
            raise WavStreamError("WAV fmt chunk of WAVE_FORMAT_EXTENSIBLE is too short for its sub-format")
        tag = struct.unpack("<H", body[24:26])[0]
    if tag not in (_PCM, _FLOAT):
        raise WavStreamError(f"WAV sample format {tag:#06x} is not supported (integer PCM or IEEE float only)")
    if channels < 1 or channels > 64:
        raise WavStreamError(f"WAV stream has {channels} channels; 1..64 are supported")
    if rate < 1:
        raise WavStreamError(f"WAV stream has sample rate {rate} Hz")
    allowed = (32, 64) if tag == _FLOAT else (8, 16, 24, 32)
    if bits not in allowed:
        kind = "float" if tag == _FLOAT else "integer PCM"
        raise WavStreamError(f"WAV {kind} of {bits} bits is not supported ({', '.join(map(str, allowed))} bits are)")
    if block_align != channels * bits // 8:
        raise WavStreamError(f"WAV block align {block_align} != {channels} channels x {bits // 8} bytes")
    return WavFormat(rate, channels, bits, tag == _FLOAT, frames=0)


def _blocks(source: _Source, info: WavFormat, data_bytes: int | None, block_frames: int) -> Iterator[np.ndarray]:
    frame = info.frame_bytes
    left, carry = data_bytes, b""
    while left is None or left > 0:
        data = source.up_to(block_frames * frame if left is None else min(block_frames * frame, left))
        if not data:
            break
        if left is not None:
            left -= len(data)
        data = carry + data
        usable = len(data) - len(data) % frame
        carry = data[usable:]
        if usable:
            yield _decode(data[:usable], info)
    if left:
        raise WavStreamError(f"WAV stream ends {left} bytes before the end of its data chunk")
    if carry:
        raise WavStreamError(f"WAV stream ends inside a sample frame ({len(carry)} stray bytes)")


def _decode(data: bytes, info: WavFormat) -> np.ndarray:
    """Interleaved samples -> float32 ``[channels, n]`` in [-1, 1]."""
    if info.is_float:
        x = np.frombuffer(data, "<f4" if info.bits == 32 else "<f8").astype(np.float32)
    elif info.bits == 8:
        x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif info.bits == 24:
        raw = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        x = (np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)).astype(np.float32)
    else:
        dtype = "<i2" if info.bits == 16 else "<i4"
        x = (np.frombuffer(data, dtype) / float(1 << (info.bits - 1))).astype(np.float32)
    return x.reshape(-1, info.channels).T


class _Source:
    """Reads from ``read`` after the bytes of ``prefix``."""

    def __init__(self, read: Callable[[int], bytes], prefix: bytes) -> None:
        self._read, self._buffer = read, bytes(prefix)
        self._ended = False

    def up_to(self, n: int) -> bytes:
        out = self._buffer[:n]
        self._buffer = self._buffer[n:]
        while len(out) < n and not self._ended:
            data = self._read(n - len(out))
            if not data:
                self._ended = True
                break
            out += data
        return out

    def exact(self, n: int, what: str) -> bytes:
        data = self.up_to(n)
        if len(data) < n:
            raise WavStreamError(f"standard input ends inside {what} ({len(data)} of {n} bytes)")
        return data

    def skip(self, n: int, what: str) -> None:
        while n > 0:
            step = min(n, 1 << 16)
            self.exact(step, what)
            n -= step
