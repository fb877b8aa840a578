"""Mel VAE of SemantiCodec: AudioLDM's ``AutoencoderKL`` (16 kHz, 64 mel bins).

A log-mel ``[B, 1, T, 64]`` maps to a diagonal-Gaussian latent ``[B, 8, T/4, 16]`` and back.
The encoder is only needed for training; inference decodes latents produced by the diffusion
model, so the model can be built without it (``with_encoder=False``).

State-dict keys equal the official ``first_stage_model.{encoder,decoder,quant_conv,
post_quant_conv}.*`` keys with the ``first_stage_model.`` prefix removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from semanticodec.nn import fastconv

LOGVAR_RANGE = (-30.0, 20.0)
"""Clamp applied to the posterior log-variance, as in the official DiagonalGaussianDistribution."""


@dataclass(frozen=True)
class VAEConfig:
    """Sizes of the mel VAE; the defaults are the official SemantiCodec values.

    ``channels`` is the base width (``ch``), multiplied per resolution level by
    ``channel_mult``; every level but the last halves (encoder) or doubles (decoder) both
    time and frequency.
    """

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 8
    embed_dim: int = 8
    in_channels: int = 1
    out_channels: int = 1
    num_groups: int = 32
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        sizes = {
            "channels": self.channels,
            "num_res_blocks": self.num_res_blocks,
            "z_channels": self.z_channels,
            "embed_dim": self.embed_dim,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "num_groups": self.num_groups,
        }
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"VAEConfig.{name} must be >= 1, got {value}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"VAEConfig.channel_mult must be non-empty and positive, got {self.channel_mult}")
        for mult in self.channel_mult:
            if (self.channels * mult) % self.num_groups:
                raise ValueError(
                    f"VAEConfig: width {self.channels * mult} (channels {self.channels} x mult {mult}) "
                    f"is not divisible by num_groups {self.num_groups}"
                )
        if self.norm_eps <= 0:
            raise ValueError(f"VAEConfig.norm_eps must be > 0, got {self.norm_eps}")

    @property
    def downsample_factor(self) -> int:
        """Ratio between mel and latent size along time and along frequency (4 by default)."""
        return 2 ** (len(self.channel_mult) - 1)


def _group_norm(channels: int, config: VAEConfig) -> nn.GroupNorm:
    return nn.GroupNorm(config.num_groups, channels, eps=config.norm_eps)


class ResnetBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, twice, plus a (1x1-projected when widths differ) skip."""

    def __init__(self, in_channels: int, out_channels: int, config: VAEConfig) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels, config)
        self.conv1 = fastconv.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels, config)
        self.conv2 = fastconv.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = fastconv.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H, W]``."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions with 1x1-conv q/k/v/proj_out."""

    def __init__(self, channels: int, config: VAEConfig) -> None:
        super().__init__()
        self.norm = _group_norm(channels, config)
        self.q = fastconv.Conv2d(channels, channels, 1)
        self.k = fastconv.Conv2d(channels, channels, 1)
        self.v = fastconv.Conv2d(channels, channels, 1)
        self.proj_out = fastconv.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``; softmax scale ``C**-0.5``."""
        height = x.shape[2]
        h = self.norm(x)
        q, k, v = (rearrange(conv(h), "b c h w -> b 1 (h w) c") for conv in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(rearrange(out, "b 1 (h w) c -> b c h w", h=height))


class Downsample(nn.Module):
    """Zero-pad one row/column at the end of each spatial axis, then a stride-2 conv3x3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = fastconv.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H/2, W/2]`` (H, W even)."""
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 in both spatial axes, then a conv3x3.

    Where :func:`fastconv.enabled` it runs as four 2x2 convolutions of the input, one per output
    phase (:func:`upsample_conv`): the same function with 4 instead of 9 products per output.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = fastconv.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, 2H, 2W]``."""
        if fastconv.enabled():
            return upsample_conv(x, self.conv.weight, self.conv.bias)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def upsample_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(nearest_x2(x), weight, bias, padding=1)`` for a 3x3 ``weight``, computed at the
    input resolution: output pixel ``(2i + a, 2j + b)`` reads input rows ``i - 1, i`` (a = 0,
    kernel rows ``[w0, w1 + w2]``) or ``i, i + 1`` (a = 1, ``[w0 + w1, w2]``), and likewise columns.
    ``x [B, Cin, H, W]`` -> ``[B, Cout, 2H, 2W]``, channels-last when ``x`` is."""
    batch, _, height, width = x.shape
    padded = F.pad(x, (1, 1, 1, 1))

    def merge(w: torch.Tensor, dim: int, phase: int) -> torch.Tensor:
        first, middle, last = w.unbind(dim)
        pair = (first, middle + last) if phase == 0 else (first + middle, last)
        return torch.stack(pair, dim)

    outputs = [
        [F.conv2d(padded[:, :, a : a + height + 1, b : b + width + 1], merge(merge(weight, 2, a), 3, b), bias) for b in (0, 1)]
        for a in (0, 1)
    ]  # outputs[a][b]: [B, Cout, H, W]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():  # keep the channels innermost
        rows = torch.stack([torch.stack([p.permute(0, 2, 3, 1) for p in row], 3) for row in outputs], 2)
        return rows.reshape(batch, 2 * height, 2 * width, -1).permute(0, 3, 1, 2)  # rows: [B, H, 2 (a), W, 2 (b), Cout]
    phases = torch.stack([torch.stack(row, -1) for row in outputs], 3)  # [B, Cout, H, 2 (a), W, 2 (b)]
    return phases.reshape(batch, -1, 2 * height, 2 * width)


class MidBlock(nn.Module):
    """ResnetBlock -> AttnBlock -> ResnetBlock at the lowest resolution."""

    def __init__(self, channels: int, config: VAEConfig) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, config)
        self.attn_1 = AttnBlock(channels, config)
        self.block_2 = ResnetBlock(channels, channels, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        return self.block_2(self.attn_1(self.block_1(x)))


class DownLevel(nn.Module):
    """One encoder resolution level: ResnetBlocks, then an optional Downsample."""

    def __init__(self, in_channels: int, out_channels: int, config: VAEConfig, downsample: bool) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * config.num_res_blocks
        self.block = nn.ModuleList(ResnetBlock(a, b, config) for a, b in zip(widths[:-1], widths[1:]))
        self.downsample = Downsample(out_channels) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return self.downsample(x)


class UpLevel(nn.Module):
    """One decoder resolution level: ``num_res_blocks + 1`` ResnetBlocks, then an optional Upsample."""

    def __init__(self, in_channels: int, out_channels: int, config: VAEConfig, upsample: bool) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * (config.num_res_blocks + 1)
        self.block = nn.ModuleList(ResnetBlock(a, b, config) for a, b in zip(widths[:-1], widths[1:]))
        self.upsample = Upsample(out_channels) if upsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return self.upsample(x)


class Encoder(nn.Module):
    """Mel ``[B, in_channels, T, F]`` -> moments ``[B, 2*z_channels, T/f, F/f]`` (f = downsample_factor)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = [config.channels] + [config.channels * m for m in config.channel_mult]
        last = len(config.channel_mult) - 1
        self.conv_in = fastconv.Conv2d(config.in_channels, config.channels, 3, padding=1)
        self.down = nn.ModuleList(
            DownLevel(widths[i], widths[i + 1], config, downsample=i != last) for i in range(last + 1)
        )
        self.mid = MidBlock(widths[-1], config)
        self.norm_out = _group_norm(widths[-1], config)
        self.conv_out = fastconv.Conv2d(widths[-1], 2 * config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent ``[B, z_channels, H, W]`` -> mel ``[B, out_channels, f*H, f*W]``; no output activation.

    ``up[i]`` is resolution level ``i`` (0 = full resolution); levels run from the last to ``up[0]``.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = [config.channels * m for m in config.channel_mult]
        self.conv_in = fastconv.Conv2d(config.z_channels, widths[-1], 3, padding=1)
        self.mid = MidBlock(widths[-1], config)
        levels = [
            UpLevel(widths[min(i + 1, len(widths) - 1)], widths[i], config, upsample=i != 0)
            for i in range(len(widths))
        ]
        self.up = nn.ModuleList(levels)
        self.norm_out = _group_norm(widths[0], config)
        self.conv_out = fastconv.Conv2d(widths[0], config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def _check_4d(x: torch.Tensor, name: str, channels: int, multiple: int = 1) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"{type(x).__name__} {getattr(x, 'dtype', '')}"
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {got}")
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} must have shape [B, {channels}, H, W], got {list(x.shape)}")
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {list(x.shape)}")
    if x.shape[2] % multiple or x.shape[3] % multiple:
        raise ValueError(f"{name}: time and frequency sizes {list(x.shape[2:])} must be multiples of {multiple}")


class AutoencoderKL(nn.Module):
    """The mel VAE: ``encode`` (training only) and ``decode`` (inference).

    Built with ``with_encoder=False`` it holds only ``decoder`` and ``post_quant_conv``; the
    official checkpoint then loads after dropping its ``encoder.*`` and ``quant_conv.*`` keys.
    """

    def __init__(self, config: VAEConfig = VAEConfig(), with_encoder: bool = True) -> None:
        super().__init__()
        self.config = config
        self.with_encoder = with_encoder
        if with_encoder:
            self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if with_encoder:
            self.quant_conv = fastconv.Conv2d(2 * config.z_channels, 2 * config.embed_dim, 1)
        self.post_quant_conv = fastconv.Conv2d(config.embed_dim, config.z_channels, 1)

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior of a log-mel.

        ``mel``: ``[B, 1, T, 64]`` natural-log magnitude mel (T and 64 multiples of 4).
        Returns ``(mean, logvar)``, each ``[B, 8, T/4, 16]``; ``logvar`` clamped to [-30, 20].
        """
        if not self.with_encoder:
            raise RuntimeError("this AutoencoderKL was built with with_encoder=False and cannot encode")
        _check_4d(mel, "mel", self.config.in_channels, self.config.downsample_factor)
        moments = self.quant_conv(self.encoder(mel))
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Log-mel of a latent: ``[B, 8, H, W] -> [B, 1, 4H, 4W]`` (``[B,8,256,16] -> [B,1,1024,64]``).

        ``z`` must already be divided by the diffusion model's ``scale_factor``.
        """
        _check_4d(z, "z", self.config.embed_dim)
        return self.decoder(self.post_quant_conv(z))
