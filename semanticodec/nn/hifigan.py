"""HiFi-GAN vocoder of SemantiCodec: 64-bin log-mel at 100 frames/s -> 16 kHz waveform.

The V1-style generator of AudioLDM (``Generator_old`` in its ``hifigan/models.py``). Weight
norm is folded in at inference, so state-dict keys are plain ``weight``/``bias`` and equal the
official ``first_stage_model.vocoder.*`` keys with that prefix removed. For training,
``apply_weight_norm()`` re-parametrises every convolution and ``remove_weight_norm()`` folds
the trained weights back into the plain keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from semanticodec.deprecation import renamed_attribute
from semanticodec.nn import fastconv


@dataclass(frozen=True)
class HiFiGANConfig:
    """Sizes of the generator; the defaults are the official 16 kHz / 64-mel values (hop 160)."""

    num_mels: int = 64
    upsample_initial_channel: int = 1024
    upsample_rates: tuple[int, ...] = (5, 4, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    leaky_slope: float = 0.1
    final_leaky_slope: float = 0.01

    def __post_init__(self) -> None:
        if self.num_mels < 1:
            raise ValueError(f"HiFiGANConfig.num_mels must be >= 1, got {self.num_mels}")
        if not self.upsample_rates or len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError(
                f"HiFiGANConfig: upsample_rates {self.upsample_rates} and upsample_kernel_sizes "
                f"{self.upsample_kernel_sizes} must be non-empty and of equal length"
            )
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if rate < 1 or kernel < rate:
                raise ValueError(f"HiFiGANConfig: upsample kernel {kernel} must be >= rate {rate} >= 1")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError(
                f"HiFiGANConfig.upsample_initial_channel {self.upsample_initial_channel} must be divisible "
                f"by 2**{len(self.upsample_rates)} (it halves at every upsampling stage)"
            )
        if not self.resblock_kernel_sizes or len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError(
                f"HiFiGANConfig: resblock_kernel_sizes {self.resblock_kernel_sizes} and "
                f"resblock_dilation_sizes {self.resblock_dilation_sizes} must be non-empty and of equal length"
            )
        if any(k < 1 or k % 2 == 0 for k in self.resblock_kernel_sizes):
            raise ValueError(f"HiFiGANConfig.resblock_kernel_sizes must be odd, got {self.resblock_kernel_sizes}")
        if any(not d or min(d) < 1 for d in self.resblock_dilation_sizes):
            raise ValueError(
                f"HiFiGANConfig.resblock_dilation_sizes must be positive, got {self.resblock_dilation_sizes}"
            )

    @property
    def hop_length(self) -> int:
        """Waveform samples per mel frame (160 by default)."""
        return math.prod(self.upsample_rates)

    def frames_for(self, samples: int) -> int:
        """Leading mel frames that determine the first ``samples`` output samples: the generator's
        dependency cone traced back from sample ``samples - 1`` (convolutions reach
        ``dilation * (kernel - 1) / 2`` to the right, a transposed convolution's output ``o``
        reads input ``floor((o + padding) / rate)``); the frames after it can be left out."""
        reach = samples - 1 + 3  # conv_post
        kernels = zip(self.resblock_kernel_sizes, self.resblock_dilation_sizes)
        block_reach = max(sum((k - 1) // 2 * (d + 1) for d in dilations) for k, dilations in kernels)
        for rate, kernel in reversed(list(zip(self.upsample_rates, self.upsample_kernel_sizes))):
            reach = (reach + block_reach + (kernel - rate) // 2) // rate
        return reach + 3 + 1  # conv_pre, and frame indices from 0

    def sample_count(self, frames: int) -> int:
        """Output length for ``frames`` mel frames: ``160 * frames + 32`` by default."""
        length = frames
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes):
            length = (length - 1) * rate - 2 * ((kernel - rate) // 2) + kernel
        return length

    num_samples = renamed_attribute("HiFiGANConfig", "num_samples", "sample_count")


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1: per dilation d, ``x += conv(lrelu(conv_d(lrelu(x))))`` (length-preserving)."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], slope: float) -> None:
        super().__init__()
        self.slope = slope
        self.convs1 = nn.ModuleList(
            fastconv.Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            fastconv.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, L] -> [B, C, L]``."""
        for conv1, conv2 in zip(self.convs1, self.convs2):
            h = conv1(F.leaky_relu(x, self.slope))
            x = conv2(F.leaky_relu(h, self.slope)) + x
        return x


def check_float_tensor(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"{type(x).__name__} {getattr(x, 'dtype', '')}"
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {got}")


def vocoder_mel_to_waveform(vocoder: nn.Module, mel: torch.Tensor, samples: int | None = None) -> torch.Tensor:
    """Waveform ``[B, 1, config.sample_count(frames)]`` of VAE-layout mel ``[B, 1, frames, num_mels]``
    through ``vocoder`` (a HiFi-GAN or a Vocos: ``forward(mel [B, num_mels, frames])`` and a config
    with ``num_mels``, ``sample_count`` and ``frames_for``).

    ``samples``: only the first ``samples`` output samples are needed; the mel frames beyond
    ``config.frames_for(samples)`` are not computed and the samples after ``samples`` are zero.
    None: all.
    """
    config = vocoder.config
    check_float_tensor(mel, "mel")
    if mel.ndim != 4 or mel.shape[1] != 1 or mel.shape[3] != config.num_mels:
        raise ValueError(f"mel must have shape [B, 1, frames, {config.num_mels}], got {list(mel.shape)}")
    frames = mel.shape[2]
    if samples is None or config.frames_for(samples) >= frames:
        return vocoder(mel[:, 0].transpose(1, 2))
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    head = vocoder(mel[:, 0, : config.frames_for(samples)].transpose(1, 2))[..., :samples]
    return F.pad(head, (0, config.sample_count(frames) - samples))


class HiFiGAN(nn.Module):
    """Generator: log-mel ``[B, 64, frames]`` -> waveform ``[B, 1, 160*frames + 32]`` in [-1, 1] at 16 kHz.

    ``resblocks[i * K + j]`` is resblock ``j`` (of K kernel sizes) of upsampling stage ``i``;
    the K outputs of a stage are averaged.
    """

    def __init__(self, config: HiFiGANConfig = HiFiGANConfig()) -> None:
        super().__init__()
        self.config = config
        widths = [config.upsample_initial_channel // 2**i for i in range(len(config.upsample_rates) + 1)]
        self.conv_pre = fastconv.Conv1d(config.num_mels, widths[0], 7, padding=3)
        self.ups = nn.ModuleList(
            fastconv.ConvTranspose1d(widths[i], widths[i + 1], kernel, rate, padding=(kernel - rate) // 2)
            for i, (rate, kernel) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes))
        )
        self.resblocks = nn.ModuleList(
            ResBlock1(width, kernel, tuple(dilations), config.leaky_slope)
            for width in widths[1:]
            for kernel, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)
        )
        self.conv_post = fastconv.Conv1d(widths[-1], 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel`` ``[B, num_mels, frames]`` (natural-log magnitude) -> ``[B, 1, sample_count(frames)]``."""
        check_float_tensor(mel, "mel")
        if mel.ndim != 3 or mel.shape[1] != self.config.num_mels or mel.shape[0] == 0 or mel.shape[2] == 0:
            raise ValueError(
                f"mel must have shape [B, {self.config.num_mels}, frames] with B, frames >= 1, got {list(mel.shape)}"
            )
        kernels = len(self.config.resblock_kernel_sizes)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, self.config.leaky_slope))
            stage = self.resblocks[i * kernels : (i + 1) * kernels]
            total = stage[0](x)
            for block in stage[1:]:
                total = total + block(x)
            x = total / kernels
        x = self.conv_post(F.leaky_relu(x, self.config.final_leaky_slope))
        return torch.tanh(x)

    def mel_to_waveform(self, mel: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        """VAE-layout mel ``[B, 1, frames, num_mels]`` -> waveform ``[B, 1, sample_count(frames)]``;
        ``samples``: as :func:`vocoder_mel_to_waveform`."""
        return vocoder_mel_to_waveform(self, mel, samples)

    def _convolutions(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]

    def apply_weight_norm(self) -> None:
        """Re-parametrise every convolution weight as ``g * v / ||v||`` (dim 0) for training."""
        for conv in self._convolutions():
            if parametrize.is_parametrized(conv, "weight"):
                raise RuntimeError("weight norm is already applied")
            weight_norm(conv, "weight", dim=0)

    def remove_weight_norm(self) -> None:
        """Fold the weight-norm parametrisation back into plain ``weight`` tensors."""
        for conv in self._convolutions():
            if not parametrize.is_parametrized(conv, "weight"):
                raise RuntimeError("weight norm is not applied")
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
