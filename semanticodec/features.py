"""Spectral features: the Kaldi fbank seen by AudioMAE and the 64-bin log-mel of the decoder.

All functions take a batch of 16 kHz waveforms ``[B, N]`` (float32 or float64 tensor, any
device) and are vectorised over the batch and the frames.

- :func:`kaldi_fbank` re-implements ``torchaudio.compliance.kaldi.fbank`` with the settings of
  the official SemantiCodec encoder (128 bins, 25 ms / 10 ms, power spectrum, log).
- :func:`audiomae_fbank` is the official ``extract_kaldi_fbank_feature``: mean removal, fbank,
  zero-frame padding to a fixed length and AudioSet normalisation.
- :func:`mel64` is the decoder-domain log-mel (n_fft 1024, hop 160, 64 Slaney bins to 8 kHz),
  the domain of the VAE and HiFi-GAN.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from semanticodec.constants import SAMPLE_RATE

FBANK_FRAME_LENGTH = 400
"""Kaldi frame length in samples (25 ms)."""
FBANK_FRAME_SHIFT = 160
"""Kaldi frame shift in samples (10 ms)."""
FBANK_N_FFT = 512
"""FFT size of the Kaldi fbank (frame length rounded up to a power of two)."""
FBANK_BINS = 128
"""Number of Kaldi mel bins."""
FBANK_LOW_HZ = 20.0
"""Lower edge of the Kaldi mel filter bank in Hz."""
PREEMPHASIS = 0.97
"""Kaldi pre-emphasis coefficient."""

AUDIOSET_MEAN = -4.2677393
"""AudioSet mean of the Kaldi log fbank (AST / AudioMAE normalisation)."""
AUDIOSET_STD = 4.5689974
"""AudioSet standard deviation of the Kaldi log fbank; features are divided by twice this."""

MEL_N_FFT = 1024
"""FFT and window size of the decoder-domain mel."""
MEL_HOP = 160
"""Hop of the decoder-domain mel in samples (10 ms)."""
MEL_BINS = 64
"""Number of bins of the decoder-domain mel."""
MEL_FMAX = 8000.0
"""Upper edge of the decoder-domain mel in Hz."""
MEL_LOG_FLOOR = 1e-5
"""Magnitudes below this are clamped before the log of the decoder-domain mel."""

MelFraming = Literal["tacotron", "audioldm_train"]


def _check_waveform(waveform: torch.Tensor, min_samples: int, what: str) -> None:
    if not isinstance(waveform, torch.Tensor):
        raise ValueError(f"waveform must be a torch.Tensor [B, N], got {type(waveform).__name__}")
    if waveform.ndim != 2:
        raise ValueError(f"waveform must be 2-D [B, N], got shape {tuple(waveform.shape)}")
    if not waveform.is_floating_point():
        raise ValueError(f"waveform must be a float tensor, got {waveform.dtype}")
    if waveform.shape[0] == 0:
        raise ValueError("waveform has an empty batch")
    if waveform.shape[1] < min_samples:
        raise ValueError(f"{what} needs at least {min_samples} samples, got {waveform.shape[1]}")


def _kaldi_mel(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * (1.0 + freq / 700.0).log()


def kaldi_mel_banks(
    num_bins: int = FBANK_BINS,
    n_fft: int = FBANK_N_FFT,
    sample_rate: int = SAMPLE_RATE,
    low_hz: float = FBANK_LOW_HZ,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Kaldi's triangular mel filters ``[num_bins, n_fft // 2 + 1]`` (up to Nyquist).

    Triangles are linear in the Kaldi mel scale 1127 ln(1 + f / 700), with edges evenly
    spaced in mel between ``low_hz`` and Nyquist. The Nyquist column is zero, as in Kaldi.
    """
    if num_bins < 1 or n_fft < 2:
        raise ValueError(f"need num_bins >= 1 and n_fft >= 2, got {num_bins} and {n_fft}")
    nyquist = 0.5 * sample_rate
    if not 0.0 <= low_hz < nyquist:
        raise ValueError(f"low_hz must lie in [0, {nyquist}), got {low_hz}")
    mel_low = 1127.0 * math.log1p(low_hz / 700.0)
    mel_high = 1127.0 * math.log1p(nyquist / 700.0)
    delta = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins, dtype=dtype, device=device).unsqueeze(1)
    left = mel_low + index * delta
    center = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    bin_hz = (sample_rate / n_fft) * torch.arange(n_fft // 2, dtype=dtype, device=device)
    mel = _kaldi_mel(bin_hz).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))


def kaldi_fbank(waveform: torch.Tensor) -> torch.Tensor:
    """Kaldi log mel filter bank, as ``torchaudio.compliance.kaldi.fbank`` in the official encoder.

    Settings: 25 ms frames every 10 ms with ``snip_edges`` (frames = 1 + (N - 400) // 160),
    per-frame DC removal, pre-emphasis 0.97, symmetric Hann window, zero-padding to 512,
    power spectrum, 128 Kaldi mel bins from 20 Hz to 8 kHz, no energy, no dither,
    ``log(max(x, float eps))``.

    Args:
        waveform: ``[B, N]`` float samples at 16 kHz, N >= 400.

    Returns:
        ``[B, frames, 128]`` log mel energies in the waveform's dtype.
    """
    _check_waveform(waveform, FBANK_FRAME_LENGTH, "kaldi_fbank")
    frames = waveform.unfold(-1, FBANK_FRAME_LENGTH, FBANK_FRAME_SHIFT)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = frames - PREEMPHASIS * previous
    window = torch.hann_window(FBANK_FRAME_LENGTH, periodic=False, dtype=waveform.dtype, device=waveform.device)
    spectrum = torch.fft.rfft(frames * window, n=FBANK_N_FFT)
    power = spectrum.abs().pow(2.0)
    banks = kaldi_mel_banks(device=waveform.device, dtype=waveform.dtype)
    energies = torch.matmul(power, banks.T)
    eps = torch.finfo(waveform.dtype).eps
    return torch.clamp(energies, min=eps).log()


def audiomae_fbank(waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
    """AudioMAE input features, as the official ``extract_kaldi_fbank_feature``.

    Each item has the mean of its whole (already padded) signal removed, then
    :func:`kaldi_fbank` is computed, zero frames are appended (or frames cut) to reach
    ``num_frames``, and every value becomes ``(x + 4.2677393) / (2 * 4.5689974)``. Appended
    frames therefore read about 0.467 and digital silence about -1.278.

    Args:
        waveform: ``[B, N]`` float samples at 16 kHz, N >= 400 (163840 samples per
            1024-frame AudioMAE window).
        num_frames: number of output frames, >= 1.

    Returns:
        ``[B, num_frames, 128]`` normalised log fbank.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    _check_waveform(waveform, FBANK_FRAME_LENGTH, "audiomae_fbank")
    fbank = kaldi_fbank(waveform - waveform.mean(dim=-1, keepdim=True))
    missing = num_frames - fbank.shape[1]
    fbank = F.pad(fbank, (0, 0, 0, missing)) if missing > 0 else fbank[:, :num_frames]
    return audioset_normalise(fbank)


def audioset_normalise(fbank: torch.Tensor) -> torch.Tensor:
    """AST / AudioMAE normalisation of a Kaldi log fbank: ``(x - mean) / (2 std)`` with the
    AudioSet statistics (:data:`AUDIOSET_MEAN`, :data:`AUDIOSET_STD`)."""
    return (fbank - AUDIOSET_MEAN) / (AUDIOSET_STD * 2)


def _slaney_hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    linear = freq / (200.0 / 3.0)
    logarithmic = 15.0 + torch.log(freq.clamp(min=1000.0) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(freq >= 1000.0, logarithmic, linear)


def _slaney_mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    linear = mel * (200.0 / 3.0)
    logarithmic = 1000.0 * torch.exp((math.log(6.4) / 27.0) * (mel - 15.0))
    return torch.where(mel >= 15.0, logarithmic, linear)


def slaney_mel_basis(
    n_fft: int = MEL_N_FFT,
    n_mels: int = MEL_BINS,
    sample_rate: int = SAMPLE_RATE,
    fmin: float = 0.0,
    fmax: float = MEL_FMAX,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Slaney-style mel filter bank ``[n_mels, n_fft // 2 + 1]`` float32 (librosa's default).

    Slaney mel scale (linear below 1 kHz, logarithmic above), triangles between
    ``n_mels + 2`` edges evenly spaced in mel from ``fmin`` to ``fmax``, each scaled by
    2 / (upper edge - lower edge) in Hz (area normalisation).
    """
    if n_mels < 1 or n_fft < 2:
        raise ValueError(f"need n_mels >= 1 and n_fft >= 2, got {n_mels} and {n_fft}")
    if not 0.0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= {sample_rate / 2}, got fmin={fmin}, fmax={fmax}")
    f64 = torch.float64
    fft_hz = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=f64)
    mel_edges = torch.linspace(
        float(_slaney_hz_to_mel(torch.tensor(fmin, dtype=f64))),
        float(_slaney_hz_to_mel(torch.tensor(fmax, dtype=f64))),
        n_mels + 2,
        dtype=f64,
    )
    hz_edges = _slaney_mel_to_hz(mel_edges)
    widths = hz_edges.diff()
    ramps = hz_edges.unsqueeze(1) - fft_hz.unsqueeze(0)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0).float().double()
    weights = weights * (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights.float().to(device)


def mel64(waveform: torch.Tensor, framing: MelFraming = "tacotron") -> torch.Tensor:
    """Decoder-domain log-mel: |STFT| (n_fft 1024, periodic Hann 1024, hop 160) -> 64 Slaney
    bins (0-8 kHz) -> ``log(clamp(x, 1e-5))``.

    ``framing`` selects how frames are placed:

    - ``"tacotron"`` (the reference ``TacotronSTFT.mel_spectrogram``): reflect pad 512 samples
      on each side, frames = 1 + N // 160 (1301 for 13 s). Requires N > 512.
    - ``"audioldm_train"`` (AudioLDM's ``mel_spectrogram_train``, the framing used to train
      the VAE and diffusion decoder): reflect pad (1024 - 160) / 2 = 432 on each side,
      frames = N // 160, i.e. 1024 frames per 10.24 s. Requires N > 432.

    Args:
        waveform: ``[B, N]`` float samples at 16 kHz.
        framing: ``"tacotron"`` or ``"audioldm_train"``.

    Returns:
        ``[B, 64, frames]`` natural-log mel magnitudes.
    """
    if framing == "tacotron":
        pad = MEL_N_FFT // 2
    elif framing == "audioldm_train":
        pad = (MEL_N_FFT - MEL_HOP) // 2
    else:
        raise ValueError(f"framing must be 'tacotron' or 'audioldm_train', got {framing!r}")
    _check_waveform(waveform, pad + 1, f"mel64 with framing {framing!r}")
    padded = F.pad(waveform.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    frames = padded.unfold(-1, MEL_N_FFT, MEL_HOP)
    window = torch.hann_window(MEL_N_FFT, periodic=True, dtype=waveform.dtype, device=waveform.device)
    magnitude = torch.fft.rfft(frames * window).abs()
    basis = slaney_mel_basis(device=waveform.device).to(waveform.dtype)
    mel = torch.matmul(magnitude, basis.T)
    return torch.clamp(mel, min=MEL_LOG_FLOOR).log().transpose(1, 2)
