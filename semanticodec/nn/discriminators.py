"""Vocoder discriminators and GAN losses, for training the vocoder.

- :class:`MultiPeriodDiscriminator` (MPD, HiFi-GAN, Kong et al. 2020): per period p, the
  waveform is reshaped to ``[B, 1, T / p, p]`` and judged by 2-D convolutions over the time
  axis only.
- :class:`MultiScaleDiscriminator` (MSD, HiFi-GAN): grouped 1-D convolution stacks on the raw
  waveform and on ×2 and ×4 average-pooled copies; spectral norm on the first (raw) scale,
  weight norm elsewhere.
- :class:`MultiResolutionDiscriminator` (MRD, as in UnivNet and Vocos): 2-D convolution stacks
  on the complex STFT (real and imaginary parts as two channels) at several resolutions, so
  phase errors are visible to it.
- Least-squares adversarial losses and the L1 feature-matching loss. HiFi-GAN weights them
  as ``L_G = L_adv + 2 L_fm + 45 L_mel`` (the weights live in the training config).

``DiscriminatorConfig.width`` scales every channel count (1.0: the paper's sizes), so a small
model can train with narrower discriminators.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

_MPD_CHANNELS = (32, 128, 512, 1024, 1024)
_MSD_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)
_MSD_GROUPS = 16
_MRD_CHANNELS = 32
_LEAKY_SLOPE = 0.1

Judgement = tuple[Tensor, list[Tensor]]
"""One sub-discriminator's output: logits ``[B, N]`` and its hidden feature maps."""


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Sizes of the discriminator set: the MPD's ``periods``, the MSD's ``scales`` (0: no
    MSD), the MRD's STFT ``resolutions`` as ``(n_fft, hop)`` pairs (empty: no MRD) and a
    channel ``width`` multiplier (channels are rounded up to a multiple of 4 for the MPD and
    the MRD and of 16, the group count, for the MSD). The defaults are HiFi-GAN's MPD + MSD."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    scales: int = 3
    width: float = 1.0
    resolutions: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.periods or any(not isinstance(p, int) or p < 1 for p in self.periods):
            raise ValueError(f"DiscriminatorConfig.periods must be positive ints, got {self.periods}")
        if len(set(self.periods)) != len(self.periods):
            raise ValueError(f"DiscriminatorConfig.periods must be distinct, got {self.periods}")
        if self.scales < 0 or (self.scales == 0 and not self.resolutions):
            raise ValueError(f"DiscriminatorConfig.scales must be >= 1 (or 0 beside an MRD), got {self.scales}")
        if not self.width > 0:
            raise ValueError(f"DiscriminatorConfig.width must be > 0, got {self.width}")
        for resolution in self.resolutions:
            if len(resolution) != 2 or not 0 < resolution[1] <= resolution[0] or resolution[0] % 2:
                raise ValueError(f"DiscriminatorConfig.resolutions must be (even n_fft, 0 < hop <= n_fft), got {resolution}")


def _scaled(channels: int, width: float, multiple: int) -> int:
    return max(multiple, -(-round(channels * width) // multiple) * multiple)


def _check_waveform(x: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 3 or x.shape[1] != 1:
        raise ValueError(f"discriminator input must be a float waveform [B, 1, T], got {getattr(x, 'shape', type(x))}")


def _judge(convs: nn.ModuleList, post: nn.Module, x: Tensor) -> Judgement:
    """Leaky-ReLU conv stack then the 1-channel output conv: logits ``[B, N]`` and every
    intermediate map (the feature-matching targets)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), _LEAKY_SLOPE)
        features.append(x)
    x = post(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """One MPD branch: ``[B, 1, T]`` -> logits ``[B, N]`` and 5 feature maps ``[B, C, T', p]``."""

    def __init__(self, period: int, width: float = 1.0) -> None:
        super().__init__()
        self.period = period
        channels = [1, *(_scaled(c, width, 4) for c in _MPD_CHANNELS)]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:]))
        )
        self.conv_post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> Judgement:
        batch, _, length = x.shape
        if length % self.period:
            pad = self.period - length % self.period
            x = F.pad(x, (0, pad), mode="reflect" if pad < length else "constant")
        return _judge(self.convs, self.conv_post, x.view(batch, 1, -1, self.period))


class ScaleDiscriminator(nn.Module):
    """One MSD branch: ``[B, 1, T]`` -> logits ``[B, N]`` and 8 feature maps ``[B, C, T']``."""

    def __init__(self, width: float = 1.0, spectral: bool = False) -> None:
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        c = [_scaled(ch, width, _MSD_GROUPS) for ch in _MSD_CHANNELS]
        layers = [
            nn.Conv1d(1, c[0], 15, 1, padding=7),
            nn.Conv1d(c[0], c[1], 41, 2, groups=4, padding=20),
            nn.Conv1d(c[1], c[2], 41, 2, groups=16, padding=20),
            nn.Conv1d(c[2], c[3], 41, 4, groups=16, padding=20),
            nn.Conv1d(c[3], c[4], 41, 4, groups=16, padding=20),
            nn.Conv1d(c[4], c[5], 41, 1, groups=16, padding=20),
            nn.Conv1d(c[5], c[6], 5, 1, padding=2),
        ]
        self.convs = nn.ModuleList(norm(layer) for layer in layers)
        self.conv_post = norm(nn.Conv1d(c[6], 1, 3, 1, padding=1))

    def forward(self, x: Tensor) -> Judgement:
        return _judge(self.convs, self.conv_post, x)


class MultiPeriodDiscriminator(nn.Module):
    """MPD: one :class:`PeriodDiscriminator` per period."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), width: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, width) for p in periods)

    def forward(self, x: Tensor) -> list[Judgement]:
        """Waveform ``[B, 1, T]`` -> one judgement per period."""
        _check_waveform(x)
        return [d(x) for d in self.discriminators]


class MultiScaleDiscriminator(nn.Module):
    """MSD: :class:`ScaleDiscriminator` on the waveform (spectral norm) and on ``scales - 1``
    successively average-pooled (kernel 4, stride 2) copies (weight norm)."""

    def __init__(self, scales: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(ScaleDiscriminator(width, spectral=i == 0) for i in range(scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, x: Tensor) -> list[Judgement]:
        """Waveform ``[B, 1, T]`` -> one judgement per scale."""
        _check_waveform(x)
        out = []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            out.append(d(x))
        return out


class ResolutionDiscriminator(nn.Module):
    """One MRD branch: ``[B, 1, T]`` -> STFT ``[B, 2, frames, n_fft / 2 + 1]`` (real, imaginary;
    periodic Hann window, centred frames) -> logits ``[B, N]`` and 5 feature maps. The three
    strided layers halve the frequency axis."""

    def __init__(self, n_fft: int, hop: int, width: float = 1.0) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = _scaled(_MRD_CHANNELS, width, 4)
        layers = [
            nn.Conv2d(2, c, (3, 9), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 3), padding=(1, 1)),
        ]
        self.convs = nn.ModuleList(weight_norm(layer) for layer in layers)
        self.conv_post = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: Tensor) -> Judgement:
        spec = torch.stft(x[:, 0], self.n_fft, self.hop, window=self.window.to(x.dtype), return_complex=True)
        return _judge(self.convs, self.conv_post, torch.view_as_real(spec).permute(0, 3, 2, 1))


class MultiResolutionDiscriminator(nn.Module):
    """MRD: one :class:`ResolutionDiscriminator` per ``(n_fft, hop)``."""

    def __init__(self, resolutions: tuple[tuple[int, int], ...], width: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(n, h, width) for n, h in resolutions)

    def forward(self, x: Tensor) -> list[Judgement]:
        """Waveform ``[B, 1, T]`` -> one judgement per resolution."""
        _check_waveform(x)
        return [d(x) for d in self.discriminators]


class VocoderDiscriminator(nn.Module):
    """MPD, MSD and MRD together: waveform ``[B, 1, T]`` -> the judgements of all
    ``len(periods) + scales + len(resolutions)`` sub-discriminators (in that order)."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()) -> None:
        super().__init__()
        self.config = config
        self.mpd = MultiPeriodDiscriminator(config.periods, config.width)
        self.msd = MultiScaleDiscriminator(config.scales, config.width)
        self.mrd = MultiResolutionDiscriminator(config.resolutions, config.width)

    def forward(self, x: Tensor) -> list[Judgement]:
        return self.mpd(x) + self.msd(x) + self.mrd(x)


def discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Least-squares discriminator loss: sum over sub-discriminators of
    ``mean((1 - D(real))²) + mean(D(fake)²)`` (logits as returned in the judgements)."""
    _check_pairs(real, fake)
    return sum(((1 - r) ** 2).mean() + (f**2).mean() for r, f in zip(real, fake))


def generator_adversarial_loss(fake: list[Tensor]) -> Tensor:
    """Least-squares generator loss: sum over sub-discriminators of ``mean((1 - D(fake))²)``."""
    if not fake:
        raise ValueError("generator_adversarial_loss needs at least one discriminator output")
    return sum(((1 - f) ** 2).mean() for f in fake)


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """Feature matching: sum over sub-discriminators and layers of ``mean|real - fake|``
    (unweighted; HiFi-GAN scales it by 2). ``real`` features are treated as constants."""
    _check_pairs(real, fake)
    total = torch.zeros((), device=fake[0][0].device)
    for real_maps, fake_maps in zip(real, fake):
        _check_pairs(real_maps, fake_maps)
        for r, f in zip(real_maps, fake_maps):
            total = total + (r.detach() - f).abs().mean()
    return total


def _check_pairs(real: list, fake: list) -> None:
    if not real or len(real) != len(fake):
        raise ValueError(f"need equally many (>= 1) real and fake outputs, got {len(real)} and {len(fake)}")
