"""WAV streams read from a pipe: every sample format, unknown lengths, RF64, damaged headers."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf

from semanticodec.wavstream import WavStreamError, open_wav_stream


def _wav(x: np.ndarray, rate: int, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x.T, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _read_all(data: bytes, chunk: int = 7, block_seconds: float = 0.01):
    """Read ``data`` through a pipe-like reader that returns at most ``chunk`` bytes per call."""
    stream = io.BytesIO(data)
    info, blocks = open_wav_stream(lambda n: stream.read(min(n, chunk)), stream.read(4), block_seconds)
    return info, np.concatenate(list(blocks), axis=1)


def _signal(channels: int = 2, n: int = 1001) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.8 * rng.uniform(-1, 1, (channels, n))).astype(np.float32)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_every_sample_format_matches_soundfile(subtype):
    data = _wav(_signal(), 22050, subtype)
    expected, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    info, x = _read_all(data)
    assert (info.sample_rate, info.channels, info.frames) == (rate, 2, 1001)
    np.testing.assert_allclose(x, expected.T, atol=1e-6)


def test_blocks_have_the_asked_duration():
    data = _wav(_signal(1, 16000), 16000, "PCM_16")
    stream = io.BytesIO(data)
    _, blocks = open_wav_stream(stream.read, b"", 0.25)
    assert [b.shape for b in blocks] == [(1, 4000)] * 4


@pytest.mark.parametrize("placeholder", [0, 0xFFFFFFFF, 0x7FFFFFFF])
def test_unknown_data_size_reads_to_the_end(placeholder):
    data = bytearray(_wav(_signal(1, 500), 8000, "PCM_16"))
    at = data.index(b"data") + 4
    data[at : at + 4] = struct.pack("<I", placeholder)
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    info, x = _read_all(bytes(data))
    assert info.frames == 0 and x.shape == (1, 500)


def test_chunks_before_data_are_skipped_and_trailing_chunks_ignored():
    data = bytearray(_wav(_signal(1, 300), 16000, "PCM_16"))
    at = data.index(b"data")
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde\x00"
    data = data[:at] + extra + data[at:] + b"junk" + struct.pack("<I", 4) + b"1234"
    info, x = _read_all(bytes(data))
    assert info.frames == 300 and x.shape == (1, 300)


def test_rf64_size_from_ds64():
    pcm = (np.arange(600, dtype=np.int16) - 300).tobytes()
    fmt = struct.pack("<HHIIHH", 1, 2, 16000, 64000, 4, 16)
    ds64 = struct.pack("<QQQI", 0, len(pcm), 300, 0)
    data = (
        b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"ds64" + struct.pack("<I", len(ds64)) + ds64
        + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF) + pcm + b"trailing"
    )
    info, x = _read_all(data)
    assert (info.channels, info.frames) == (2, 300)
    np.testing.assert_allclose(x[0, :3] * 32768, [-300, -298, -296])


def test_extensible_float():
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 64000, 4, 32, 22, 32, 4) + struct.pack("<H", 3) + bytes(14)
    pcm = np.array([0.5, -0.25], "<f4").tobytes()
    data = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    _, x = _read_all(data)
    np.testing.assert_array_equal(x, [[0.5, -0.25]])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:10], "ends inside the RIFF header"),
        (lambda d: d[:30], "ends inside the WAV fmt chunk"),
        (lambda d: b"RIFX" + d[4:], "not a WAV stream"),
        (lambda d: d[:20] + struct.pack("<H", 2) + d[22:], "sample format 0x0002 is not supported"),
        (lambda d: d[:34] + struct.pack("<H", 12) + d[36:], "12 bits is not supported"),
        (lambda d: d[:-3], "ends 3 bytes before the end of its data chunk"),
    ],
)
def test_damaged_streams_name_the_problem(mutate, message):
    data = mutate(_wav(_signal(1, 100), 16000, "PCM_16"))
    with pytest.raises(WavStreamError, match=message):
        _read_all(data)


def test_unknown_length_stream_ending_inside_a_frame():
    data = bytearray(_wav(_signal(2, 100), 16000, "PCM_16"))
    at = data.index(b"data") + 4
    data[at : at + 4] = struct.pack("<I", 0xFFFFFFFF)
    with pytest.raises(WavStreamError, match="inside a sample frame"):
        _read_all(bytes(data[:-1]))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_pipe_output():
    wav = _wav(_signal(1, 8000), 8000, "PCM_16")
    piped = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "wav", "-i", "-", "-f", "wav", "-c:a", "pcm_s24le", "-"],
        input=wav, capture_output=True, check=True,
    ).stdout
    info, x = _read_all(piped, chunk=4096)
    assert info.sample_rate == 8000 and x.shape == (1, 8000)
    np.testing.assert_allclose(x, sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)[0].T, atol=1e-4)
