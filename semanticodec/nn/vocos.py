"""Vocos vocoder (Siuzdak 2023): log-mel at 100 frames/s -> complex STFT -> inverse STFT.

A frame-rate network: ConvNeXt blocks run on the mel frames themselves (no upsampling) and a
linear head predicts, per frame, the log-magnitude and the phase of an STFT with hop 160, which
an inverse STFT turns into 16 kHz samples. Per second of audio it costs about a tenth of a
sample-rate HiFi-GAN of similar quality, which is what lets the small model's vocoder train
on a CPU. The small configuration (:meth:`~semanticodec.config.ModelConfig.small`) uses it;
official configurations keep the official HiFi-GAN.

Frame alignment: frame ``i`` of the decoder-domain mel (``mel64`` with the ``audioldm_train``
framing) is centred on sample ``160 i + 80``, so the inverse STFT places synthesis frame ``i``
centred there too and returns exactly ``160 * frames`` samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semanticodec.deprecation import renamed_attribute
from semanticodec.nn.hifigan import check_float_tensor, vocoder_mel_to_waveform


@dataclass(frozen=True)
class VocosConfig:
    """Sizes of the Vocos generator.

    ``dim``/``intermediate_dim``: ConvNeXt width and its MLP width; ``num_layers`` blocks with
    depth-wise kernels of ``kernel_size`` frames; the head predicts an STFT of ``n_fft``
    points (``n_fft // 2 + 1`` bins) at ``hop_length`` samples per frame.
    """

    num_mels: int = 64
    dim: int = 384
    intermediate_dim: int = 1152
    num_layers: int = 8
    kernel_size: int = 7
    n_fft: int = 640
    hop_length: int = 160

    def __post_init__(self) -> None:
        for name in ("num_mels", "dim", "intermediate_dim", "num_layers", "hop_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"VocosConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"VocosConfig.kernel_size must be odd, got {self.kernel_size}")
        if self.n_fft % 2 or self.n_fft < 2 * self.hop_length or (self.n_fft - self.hop_length) % 2:
            raise ValueError(
                f"VocosConfig.n_fft must be even, >= 2 x hop_length and n_fft - hop_length even, "
                f"got n_fft {self.n_fft}, hop {self.hop_length}"
            )

    def frames_for(self, samples: int) -> int:
        """Leading mel frames that determine the first ``samples`` output samples: synthesis frame
        ``i`` starts ``(n_fft - hop_length) / 2`` samples before ``hop_length * i``, so sample
        ``samples - 1`` is reached by frames up to ``(samples - 1 + that) // hop_length``; the
        embedding conv (kernel 7) and the ConvNeXt blocks each reach ``(kernel - 1) / 2`` frames
        further right. The frames after it can be left out."""
        last = (samples - 1 + (self.n_fft - self.hop_length) // 2) // self.hop_length
        return last + 3 + self.num_layers * (self.kernel_size // 2) + 1

    def sample_count(self, frames: int) -> int:
        """Output length for ``frames`` mel frames: ``hop_length * frames``."""
        return self.hop_length * frames

    num_samples = renamed_attribute("VocosConfig", "num_samples", "sample_count")


class ConvNeXtBlock(nn.Module):
    """``x + γ · Linear(GELU(Linear(LayerNorm(DWConv(x)))))`` on ``[B, C, frames]``."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class InverseSTFT(nn.Module):
    """Inverse STFT with centred frames: complex ``[B, n_fft // 2 + 1, frames]`` ->
    ``[B, hop * frames]``, synthesis frame ``i`` centred on sample ``hop * i + hop / 2``.

    Windowed overlap-add normalised by the summed squared window (a periodic Hann), so the
    STFT of a signal taken with the same framing and window is inverted exactly (up to the
    first and last ``(n_fft - hop) / 2`` samples, which fewer frames cover).
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    @property
    def offset(self) -> int:
        """Samples by which the first frame starts before sample 0."""
        return (self.n_fft - self.hop) // 2

    def forward(self, spec: Tensor) -> Tensor:
        frames = spec.shape[-1]
        window = self.window.to(spec.real.dtype)
        pieces = torch.fft.irfft(spec, n=self.n_fft, dim=1) * window[:, None]  # [B, n_fft, frames]
        length = (frames - 1) * self.hop + self.n_fft
        audio = F.fold(pieces, (1, length), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0]
        envelope = F.fold(
            (window**2)[None, :, None].expand(1, -1, frames), (1, length), (1, self.n_fft), stride=(1, self.hop)
        )[0, 0, 0]
        start = self.offset
        end = start + frames * self.hop
        return audio[:, start:end] / envelope[start:end].clamp(min=1e-11)

    def analysis(self, audio: Tensor) -> Tensor:
        """The STFT ``[B, n_fft // 2 + 1, N // hop]`` this inverse undoes: frames of ``audio``
        ``[B, N]`` (N a multiple of hop) centred as above, zero-padded at the ends."""
        padded = F.pad(audio, (self.offset, self.offset + self.hop))
        frames = padded.unfold(-1, self.n_fft, self.hop)[:, : audio.shape[-1] // self.hop]
        return torch.fft.rfft(frames * self.window.to(audio.dtype), dim=-1).transpose(1, 2)


class Vocos(nn.Module):
    """Generator: log-mel ``[B, num_mels, frames]`` -> waveform ``[B, 1, hop * frames]`` at 16 kHz.

    Embedding conv (kernel 7) and LayerNorm, ``num_layers`` ConvNeXt blocks, LayerNorm, then a
    linear head to ``n_fft + 2`` channels: log-magnitude and phase of ``n_fft // 2 + 1`` bins.
    The magnitude is ``exp`` of the first half (clamped at 100), the phase is taken as is.
    """

    def __init__(self, config: VocosConfig = VocosConfig()) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Conv1d(config.num_mels, config.dim, 7, padding=3)
        self.norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(config.dim, config.intermediate_dim, config.kernel_size, 1.0 / config.num_layers)
            for _ in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.head = nn.Linear(config.dim, config.n_fft + 2)
        self.istft = InverseSTFT(config.n_fft, config.hop_length)

    def spectrum(self, mel: Tensor) -> Tensor:
        """Predicted complex STFT ``[B, n_fft // 2 + 1, frames]`` of mel ``[B, num_mels, frames]``."""
        x = self.embed(mel)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        x = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2)
        log_magnitude, phase = x.float().chunk(2, dim=1)
        magnitude = log_magnitude.exp().clamp(max=100.0)
        return torch.polar(magnitude, phase)

    def forward(self, mel: Tensor) -> Tensor:
        """``mel`` ``[B, num_mels, frames]`` (natural-log magnitude) -> ``[B, 1, hop * frames]``."""
        check_float_tensor(mel, "mel")
        if mel.ndim != 3 or mel.shape[1] != self.config.num_mels or mel.shape[0] == 0 or mel.shape[2] == 0:
            raise ValueError(
                f"mel must have shape [B, {self.config.num_mels}, frames] with B, frames >= 1, got {list(mel.shape)}"
            )
        return self.istft(self.spectrum(mel)).to(mel.dtype)[:, None]

    def mel_to_waveform(self, mel: Tensor, samples: int | None = None) -> Tensor:
        """VAE-layout mel ``[B, 1, frames, num_mels]`` -> waveform ``[B, 1, hop * frames]``;
        ``samples``: as :func:`~semanticodec.nn.hifigan.vocoder_mel_to_waveform`."""
        return vocoder_mel_to_waveform(self, mel, samples)
