"""Audio I/O: reading, band-limited resampling (error against analytic sines), downmix, errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from parity import shared_path
from semanticodec.audio import AudioError, load_audio, prepare, read_audio, resample
from semanticodec.constants import SAMPLE_RATE


def _db(x: float) -> float:
    return 20 * np.log10(max(x, 1e-30))


@pytest.mark.parametrize(
    ("orig_sr", "freq"),
    [
        (sr, f)
        for sr in (8000, 11025, 22050, 32000, 44100, 48000, 96000)
        for f in (440.0, 3000.0, 7000.0)
        if f < 0.95 * sr / 2
    ],
)
def test_resample_matches_analytic_sine(orig_sr: int, freq: float) -> None:
    t = np.arange(2 * orig_sr) / orig_sr
    y = resample(np.sin(2 * np.pi * freq * t).astype(np.float32), orig_sr)
    assert len(y) == 2 * SAMPLE_RATE
    ref = np.sin(2 * np.pi * freq * np.arange(len(y)) / SAMPLE_RATE)
    inner = slice(4000, -4000)
    err = np.sqrt(np.mean((y[inner] - ref[inner]) ** 2) / np.mean(ref[inner] ** 2))
    assert _db(err) < -100, f"resampling error {_db(err):.1f} dB"


@pytest.mark.parametrize("orig_sr", [22050, 44100, 48000])
def test_resample_rejects_aliases(orig_sr: int) -> None:
    t = np.arange(orig_sr) / orig_sr
    y = resample(np.sin(2 * np.pi * 9000.0 * t).astype(np.float32), orig_sr)
    assert _db(np.sqrt(np.mean(y[2000:-2000] ** 2) / 0.5)) < -90


def test_resample_length_is_ceil() -> None:
    assert len(resample(np.zeros(44101, np.float32), 44100)) == 16001
    assert len(resample(np.zeros(7, np.float32), 44100)) == 3


def test_downmix_mean_and_first() -> None:
    stereo = np.stack([np.full(100, 0.5, np.float32), np.full(100, -0.1, np.float32)])
    assert np.allclose(prepare(stereo, SAMPLE_RATE), 0.2)
    assert np.allclose(prepare(stereo, SAMPLE_RATE, downmix="first"), 0.5)
    assert np.allclose(prepare(torch.from_numpy(stereo), SAMPLE_RATE), 0.2)


def test_integer_pcm_is_scaled() -> None:
    pcm = np.array([0, 16384, -32767], np.int16)
    assert np.allclose(prepare(pcm, SAMPLE_RATE), [0.0, 0.5, -1.0], atol=1e-4)


@pytest.mark.parametrize(
    ("audio", "sr", "message"),
    [
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.zeros((2, 0), np.float32), 16000, "empty"),
        (np.array([0.0, np.nan], np.float32), 16000, "NaN"),
        (np.array([0.0, np.inf], np.float32), 16000, "NaN or infinite"),
        (np.zeros((2, 2, 2), np.float32), 16000, "shape"),
        (np.zeros((1000, 2), np.float32), 16000, "channels"),
        (np.zeros(10, np.float32), 0, "sample rate"),
        (np.zeros(10, np.float32), 16000.5, "sample rate"),
        (np.array(["a"]), 16000, "numbers"),
    ],
)
def test_bad_audio_is_a_clear_error(audio, sr, message) -> None:
    with pytest.raises(AudioError, match=message):
        prepare(audio, sr)


def test_unreadable_and_missing_files(tmp_path) -> None:
    with pytest.raises(AudioError, match="no such audio file"):
        read_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00not really a wave file")
    with pytest.raises(AudioError, match="cannot read audio"):
        read_audio(junk)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)


def test_reads_real_files_of_any_rate_and_channels() -> None:
    stereo_44k = shared_path("audio", "music", "freedoom1_D_E1M4_44k_stereo_10s.wav")
    raw, sr = read_audio(stereo_44k)
    assert sr == 44100 and raw.shape[0] == 2
    mono = load_audio(stereo_44k)
    assert mono.dtype == np.float32 and mono.ndim == 1
    assert len(mono) == int(np.ceil(raw.shape[1] * 16000 / 44100))
    flac = load_audio(shared_path("audio", "sound", "loop_amen.flac"))
    assert flac.ndim == 1 and np.isfinite(flac).all() and np.abs(flac).max() > 0.01
