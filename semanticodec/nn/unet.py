"""Latent-diffusion UNet of SemantiCodec (AudioLDM's ``openaimodel.UNetModel`` as configured there).

The UNet maps a noisy VAE latent ``x_t`` ``[B, 8, 256, 16]`` (time x frequency), the diffusion
timestep ``t`` ``[B]`` and the conditioning sequence ``context`` ``[B, N, context_dim]`` to the
v-prediction ``[B, 8, 256, 16]``. In the official UNet conditioning enters only through
cross-attention. Every attention site holds two :class:`SpatialTransformer` s: a
self-attention-only one (the official ``extra_sa_layer``) followed by one that cross-attends
to the context.

``UNetConfig.aligned_context_groups > 0`` (this project's small model) adds a second path:
the context rows (without their position columns) are projected to the base width, laid out
on their (time, frequency-patch) grid and added, nearest-upsampled, to the first feature map,
so every latent cell sees the tokens of its own 0.16 s column and frequency band directly
instead of having to find them by position through attention.

State-dict keys equal the official ``model.diffusion_model.*`` keys with that prefix removed:
``time_embed.{0,2}``, ``input_blocks.{i}.{j}``, ``middle_block.{j}``, ``output_blocks.{i}.{j}``,
``out.{0,2}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from semanticodec.nn.attention import SpatialTransformer

POSITIONAL_ENCODING_DIM = 192
"""Width of the sinusoidal position table appended to every conditioning vector."""


def context_dim_for_token_rate(token_rate: int) -> int:
    """Cross-attention width for a token rate: ``2 * 768 * (100 / token_rate) + 192``.

    100 -> 1728, 50 -> 3264, 25 -> 6336 (acoustic code vector, semantic centroid, position).
    """
    stack = {100: 1, 50: 2, 25: 4}.get(token_rate)
    if stack is None:
        raise ValueError(f"token_rate must be 25, 50 or 100, got {token_rate}")
    return 2 * 768 * stack + POSITIONAL_ENCODING_DIM


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of the UNet; the defaults are the official token-rate-100 values.

    ``attention_resolutions`` lists the downsampling factors (1, 2, 4, ... per level) at
    which the two spatial transformers are inserted; heads have ``num_head_channels``
    channels each. ``norm_groups`` is the GroupNorm group count of every normalisation.
    """

    in_channels: int = 8
    out_channels: int = 8
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 3, 5)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (8, 4, 2)
    num_head_channels: int = 32
    transformer_depth: int = 1
    context_dim: int = 1728
    norm_groups: int = 32
    dropout: float = 0.0
    aligned_context_groups: int = 0

    def __post_init__(self) -> None:
        sizes = {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "model_channels": self.model_channels,
            "num_res_blocks": self.num_res_blocks,
            "num_head_channels": self.num_head_channels,
            "transformer_depth": self.transformer_depth,
            "context_dim": self.context_dim,
            "norm_groups": self.norm_groups,
        }
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"UNetConfig.{name} must be >= 1, got {value}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"UNetConfig.channel_mult must be non-empty and positive, got {self.channel_mult}")
        if self.aligned_context_groups < 0:
            raise ValueError(f"UNetConfig.aligned_context_groups must be >= 0, got {self.aligned_context_groups}")
        if self.aligned_context_groups and self.context_dim <= POSITIONAL_ENCODING_DIM:
            raise ValueError(
                f"UNetConfig: aligned context needs context_dim > {POSITIONAL_ENCODING_DIM}, got {self.context_dim}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout}")
        for level, mult in enumerate(self.channel_mult):
            width = self.model_channels * mult
            if width % self.norm_groups:
                raise ValueError(
                    f"UNetConfig: level {level} width {width} is not divisible by norm_groups {self.norm_groups}"
                )
            if 2**level in self.attention_resolutions and width % self.num_head_channels:
                raise ValueError(
                    f"UNetConfig: level {level} width {width} is not divisible by "
                    f"num_head_channels {self.num_head_channels}"
                )

    @classmethod
    def for_token_rate(cls, token_rate: int) -> UNetConfig:
        """The official UNet of a SemantiCodec model with ``token_rate`` 25, 50 or 100."""
        return cls(context_dim=context_dim_for_token_rate(token_rate))

    @property
    def downsample_factor(self) -> int:
        """Total downsampling of the latent (8 by default): inputs must be multiples of it."""
        return 2 ** (len(self.channel_mult) - 1)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t f), sin(t f)]`` of ``timesteps`` ``[B]`` -> float32 ``[B, dim]``.

    ``f_i = exp(-ln(max_period) * i / (dim // 2))`` for ``i < dim // 2``, computed in float32
    as in the official code; an odd ``dim`` gets a trailing zero column.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm (eps 1e-5) evaluated in float32 and cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class ResBlock(nn.Module):
    """``GN -> SiLU -> conv3x3``, plus the projected time embedding, then ``GN -> SiLU -> dropout -> conv3x3``.

    A 1x1 conv maps the skip path when the width changes. ``x``: ``[B, C_in, H, W]``,
    ``emb``: ``[B, emb_channels]`` -> ``[B, C_out, H, W]``.
    """

    def __init__(
        self, channels: int, emb_channels: int, out_channels: int, norm_groups: int = 32, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            GroupNorm32(norm_groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(norm_groups, out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, kernel_size=1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Downsample(nn.Module):
    """Strided conv3x3 halving height and width: ``[B, C, H, W] -> [B, C, H/2, W/2]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then conv3x3: ``[B, C, H, W] -> [B, C, 2H, 2W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    """Runs its layers in order, giving ResBlocks the time embedding and cross-attention transformers the context."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, None if layer.context_dim is None else context)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """The conditional latent-diffusion UNet (v-prediction); see the module docstring."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        mc = config.model_channels
        emb_dim = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res_block(channels: int, out_channels: int) -> ResBlock:
            return ResBlock(channels, emb_dim, out_channels, config.norm_groups, config.dropout)

        def attention_pair(channels: int) -> list[nn.Module]:
            heads = channels // config.num_head_channels
            return [
                SpatialTransformer(
                    channels,
                    heads,
                    config.num_head_channels,
                    config.transformer_depth,
                    context_dim,
                    config.norm_groups,
                    config.dropout,
                )
                for context_dim in (None, config.context_dim)
            ]

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(config.in_channels, mc, 3, padding=1))])
        if config.aligned_context_groups:
            self.context_in = nn.Linear(config.context_dim - POSITIONAL_ENCODING_DIM, mc)
            nn.init.zeros_(self.context_in.weight)
            nn.init.zeros_(self.context_in.bias)
        skip_channels = [mc]
        ch = mc
        for level, mult in enumerate(config.channel_mult):
            attend = 2**level in config.attention_resolutions
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [res_block(ch, mc * mult)]
                ch = mc * mult
                if attend:
                    layers += attention_pair(ch)
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(config.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skip_channels.append(ch)

        self.middle_block = TimestepEmbedSequential(res_block(ch, ch), *attention_pair(ch), res_block(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            attend = 2**level in config.attention_resolutions
            for i in range(config.num_res_blocks + 1):
                layers = [res_block(ch + skip_channels.pop(), mc * mult)]
                ch = mc * mult
                if attend:
                    layers += attention_pair(ch)
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(config.norm_groups, ch), nn.SiLU(), nn.Conv2d(mc, config.out_channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predict v for ``x`` ``[B, in_channels, H, W]`` at integer timesteps ``t`` ``[B]``.

        ``context``: ``[B, N, context_dim]`` (any N). ``H`` and ``W`` must be multiples of
        ``config.downsample_factor``. Returns ``[B, out_channels, H, W]``.
        """
        self._check_inputs(x, t, context)
        t_emb = timestep_embedding(t, self.config.model_channels)
        emb = self.time_embed(t_emb.to(self.time_embed[0].weight.dtype))
        skips = []
        h = x
        for i, block in enumerate(self.input_blocks):
            h = block(h, emb, context)
            if i == 0 and self.config.aligned_context_groups:
                h = h + self._aligned_context(context, h.shape[2:])
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h)

    def _aligned_context(self, context: torch.Tensor, size: torch.Size) -> torch.Tensor:
        """Context rows ``[B, N, context_dim]`` -> ``[B, model_channels, H, W]`` on the latent grid.

        Row ``n`` is time step ``n // G``, frequency patch ``n % G`` (G = aligned_context_groups,
        AudioMAE's time-major patch order); the ``[N / G, G]`` grid is nearest-upsampled to ``size``.
        """
        groups = self.config.aligned_context_groups
        features = self.context_in(context[:, :, : self.config.context_dim - POSITIONAL_ENCODING_DIM])
        batch, rows, channels = features.shape
        grid = features.reshape(batch, rows // groups, groups, channels).permute(0, 3, 1, 2)
        return F.interpolate(grid, size=tuple(size), mode="nearest").to(context.dtype)

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> None:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"UNet input x must be [B, {cfg.in_channels}, H, W], got {tuple(x.shape)}")
        factor = cfg.downsample_factor
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"UNet input height and width must be multiples of {factor}, got {tuple(x.shape[2:])}")
        batch = x.shape[0]
        if t.shape != (batch,) or t.is_floating_point() or t.is_complex():
            raise ValueError(
                f"UNet timesteps t must be an integer tensor of shape [{batch}], got {t.dtype} {tuple(t.shape)}"
            )
        if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != cfg.context_dim:
            raise ValueError(f"UNet context must be [{batch}, N, {cfg.context_dim}], got {tuple(context.shape)}")
        if cfg.aligned_context_groups and context.shape[1] % cfg.aligned_context_groups:
            raise ValueError(
                f"UNet context rows ({context.shape[1]}) must be a multiple of "
                f"aligned_context_groups ({cfg.aligned_context_groups})"
            )
