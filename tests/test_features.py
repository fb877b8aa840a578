"""Features: Kaldi fbank (AudioMAE input) and the 64-bin decoder-domain log-mel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from parity import assert_parity, reference
from semanticodec.features import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    audiomae_fbank,
    kaldi_fbank,
    kaldi_mel_banks,
    mel64,
    slaney_mel_basis,
)

WINDOW_SAMPLES = 163840


def _padded_reference_waveform() -> torch.Tensor:
    waveform = torch.from_numpy(reference("tr100_encode")["waveform"])
    return torch.nn.functional.pad(waveform, (0, 2 * WINDOW_SAMPLES - waveform.numel())).unsqueeze(0)


def _naive_kaldi_fbank(signal: np.ndarray) -> np.ndarray:
    """Per-frame float64 Kaldi fbank written from the Kaldi recipe, as an independent oracle."""
    n_frames = 1 + (len(signal) - 400) // 160
    n = np.arange(400)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / 399)
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    edges = np.linspace(mel(20.0), mel(8000.0), 130)
    bin_mel = mel(np.arange(257) * 16000 / 512)
    banks = np.zeros((128, 257))
    for m in range(128):
        for k in range(256):
            lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
            if lo < bin_mel[k] < hi:
                banks[m, k] = (bin_mel[k] - lo) / (mid - lo) if bin_mel[k] <= mid else (hi - bin_mel[k]) / (hi - mid)
    out = np.empty((n_frames, 128))
    for i in range(n_frames):
        frame = signal[i * 160 : i * 160 + 400].astype(np.float64)
        frame = frame - frame.mean()
        frame = frame - 0.97 * np.concatenate([frame[:1], frame[:-1]])
        power = np.abs(np.fft.rfft(frame * window, n=512)) ** 2
        out[i] = np.log(np.maximum(banks @ power, np.finfo(np.float64).eps))
    return out


def test_kaldi_fbank_matches_naive_oracle() -> None:
    rng = np.random.default_rng(0)
    signals = rng.standard_normal((2, 4000)) * np.array([[0.1], [0.5]])
    ours = kaldi_fbank(torch.from_numpy(signals))
    assert ours.shape == (2, 1 + (4000 - 400) // 160, 128)
    for item in range(2):
        expected = _naive_kaldi_fbank(signals[item])
        np.testing.assert_allclose(ours[item].numpy(), expected, rtol=0, atol=1e-9)


def test_kaldi_mel_banks_shape_and_nyquist_column() -> None:
    banks = kaldi_mel_banks()
    assert banks.shape == (128, 257)
    assert torch.all(banks[:, -1] == 0) and torch.all(banks >= 0) and float(banks.max()) <= 1.0
    # On the 31.25 Hz FFT grid, mel bin 3 (about 63-93 Hz) lies strictly between FFT bins 2
    # and 3, so it is empty, as in Kaldi/torchaudio: its log energy is always the floor.
    assert (banks.sum(dim=1) == 0).nonzero().flatten().tolist() == [3]


def test_audiomae_fbank_parity() -> None:
    expected = reference("tr100_encode")["fbank"]
    waveform = _padded_reference_waveform()
    assert kaldi_fbank(waveform).shape == (1, 2046, 128)
    actual = audiomae_fbank(waveform, num_frames=2048)
    assert_parity(actual, expected, "fbank")
    assert torch.allclose(actual[0, -2:], torch.full((2, 128), AUDIOSET_MEAN / (-2 * AUDIOSET_STD)))


def test_audiomae_fbank_silence_and_cut() -> None:
    out = audiomae_fbank(torch.zeros(1, 16000), num_frames=50)
    assert out.shape == (1, 50, 128)
    floor = (math.log(torch.finfo(torch.float32).eps) - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)
    assert torch.allclose(out, torch.full_like(out, floor))
    assert abs(floor - (-1.2775939)) < 1e-6


def test_audiomae_fbank_batch_equals_items() -> None:
    rng = np.random.default_rng(1)
    batch = torch.from_numpy(rng.standard_normal((3, 8000)).astype(np.float32)) * 0.3 + 0.05
    together = audiomae_fbank(batch, num_frames=64)
    for item in range(3):
        alone = audiomae_fbank(batch[item : item + 1], num_frames=64)
        torch.testing.assert_close(together[item : item + 1], alone, rtol=1e-5, atol=1e-5)


def test_slaney_mel_basis_parity() -> None:
    assert_parity(slaney_mel_basis(), reference("tr100_train")["train_mel_basis"], "train_mel_basis", tol=1e-6)


def test_mel64_parity() -> None:
    waveform = torch.from_numpy(reference("tr100_encode")["waveform"]).unsqueeze(0)
    actual = mel64(waveform)
    assert actual.shape == (1, 64, 1301)
    assert_parity(actual, reference("tr100_train")["train_mel64"], "train_mel64")


@pytest.mark.parametrize("samples", [WINDOW_SAMPLES, 16000, 1000])
def test_mel64_frame_counts(samples: int) -> None:
    x = torch.randn(2, samples, generator=torch.Generator().manual_seed(samples))
    assert mel64(x).shape == (2, 64, 1 + samples // 160)
    assert mel64(x, framing="audioldm_train").shape == (2, 64, samples // 160)


def test_mel64_train_framing_is_shifted_tacotron_framing() -> None:
    x = 0.2 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(3))
    tacotron = mel64(x)
    train = mel64(x, framing="audioldm_train")
    start, stop = 4, train.shape[-1] - 4
    advanced = mel64(x[:, 80:])[..., start:stop]
    torch.testing.assert_close(train[..., start:stop], advanced, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(train[..., start:stop], tacotron[..., start:stop], atol=1e-2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kaldi_fbank(torch.zeros(1000)), "2-D"),
        (lambda: kaldi_fbank(torch.zeros(1, 399)), "at least 400"),
        (lambda: kaldi_fbank(torch.zeros(1, 1000, dtype=torch.int16)), "float"),
        (lambda: kaldi_fbank(np.zeros((1, 1000))), "torch.Tensor"),
        (lambda: audiomae_fbank(torch.zeros(1, 1000), 0), "num_frames"),
        (lambda: mel64(torch.zeros(1, 512)), "at least 513"),
        (lambda: mel64(torch.zeros(1, 2000), framing="center"), "framing"),
        (lambda: slaney_mel_basis(fmax=9000.0), "fmax"),
    ],
)
def test_bad_input_raises_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
