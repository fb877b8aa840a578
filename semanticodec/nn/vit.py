"""AudioMAE ViT-B/16 encoder: the frozen semantic feature extractor of SemantiCodec.

A normalised Kaldi fbank window ``[B, 1024, 128]`` (time x mel) is cut into 16 x 16 patches,
64 along time and 8 along frequency, ordered time-major (patch index ``t * 8 + f``). A CLS
token is prepended and 12 pre-LN transformer blocks are applied; the output is the mean of
``norm(x)`` after each block whose index exceeds ``contextual_depth`` (blocks 9, 10, 11).

State-dict keys equal the official ``audiomae.model.*`` keys of the MAE encoder with the
``audiomae.model.`` prefix removed. The unused MAE decoder keys of the official checkpoint
are listed by :func:`mae_decoder_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass(frozen=True)
class AudioMAEConfig:
    """Sizes of the AudioMAE encoder; the defaults are the official ViT-B/16 values.

    ``num_frames`` x ``num_mels`` is the input window (time x frequency); both must be
    multiples of ``patch_size``. The output averages ``norm(x)`` over the blocks with index
    greater than ``contextual_depth``.
    """

    num_frames: int = 1024
    num_mels: int = 128
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    contextual_depth: int = 8
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("num_frames", "num_mels", "patch_size", "embed_dim", "depth", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"AudioMAEConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_frames % self.patch_size or self.num_mels % self.patch_size:
            raise ValueError(
                f"AudioMAEConfig: input {self.num_frames} x {self.num_mels} is not a multiple of "
                f"patch_size {self.patch_size}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(f"AudioMAEConfig: embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
        if self.embed_dim % 4:
            raise ValueError(f"AudioMAEConfig: embed_dim {self.embed_dim} must be a multiple of 4 (2-D sin-cos table)")
        if not -1 <= self.contextual_depth <= self.depth - 2:
            raise ValueError(
                f"AudioMAEConfig.contextual_depth must lie in [-1, depth - 2] = [-1, {self.depth - 2}] so that "
                f"at least one block is averaged, got {self.contextual_depth}"
            )
        if self.mlp_ratio <= 0 or self.norm_eps <= 0:
            raise ValueError(f"AudioMAEConfig: mlp_ratio and norm_eps must be > 0, got {self.mlp_ratio}, {self.norm_eps}")

    @property
    def time_patches(self) -> int:
        """Patches along time (64)."""
        return self.num_frames // self.patch_size

    @property
    def freq_patches(self) -> int:
        """Patches along frequency (8)."""
        return self.num_mels // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patches per window (512), excluding the CLS token."""
        return self.time_patches * self.freq_patches

    @property
    def hidden_dim(self) -> int:
        """Width of the MLP hidden layer (3072)."""
        return int(self.embed_dim * self.mlp_ratio)


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def audiomae_pos_embed(embed_dim: int = 768, time_patches: int = 64, freq_patches: int = 8) -> torch.Tensor:
    """The fixed 2-D sin-cos position table of AudioMAE, ``[1, 1 + time_patches * freq_patches, embed_dim]``.

    Row 0 (CLS) is zero. Row ``1 + p`` for patch ``p = t * freq_patches + f`` is
    ``[s(p mod time_patches), s(p // time_patches)]``, where ``s(x)`` is the
    ``embed_dim / 2``-wide vector ``[sin(x w_k)]_k ++ [cos(x w_k)]_k`` with
    ``w_k = 10000^(-k / (embed_dim / 4))``. This reproduces the official grid quirk: the table is
    built on a (freq_patches, time_patches) grid although patches are time-major, so the first
    half does not see the time index. Computed in float64, returned as float32.
    The official checkpoint stores this table; use it for freshly initialised models.
    """
    if embed_dim < 4 or embed_dim % 4:
        raise ValueError(f"embed_dim must be a positive multiple of 4, got {embed_dim}")
    if time_patches < 1 or freq_patches < 1:
        raise ValueError(f"need time_patches, freq_patches >= 1, got {time_patches}, {freq_patches}")
    patch = np.arange(time_patches * freq_patches)
    table = np.concatenate(
        [_sincos_1d(embed_dim // 2, patch % time_patches), _sincos_1d(embed_dim // 2, patch // time_patches)], axis=1
    )
    table = np.concatenate([np.zeros((1, embed_dim)), table], axis=0)
    return torch.from_numpy(table.astype(np.float32)).unsqueeze(0)


def mae_decoder_keys(decoder_depth: int = 8) -> tuple[str, ...]:
    """Official ``audiomae.model.*`` sub-keys that :class:`AudioMAEEncoder` drops: the MAE decoder.

    These are ``mask_token``, ``decoder_pos_embed``, ``decoder_embed.*``,
    ``decoder_blocks.{0..decoder_depth-1}.*``, ``decoder_norm.*`` and ``decoder_pred.*``
    (without the ``audiomae.model.`` prefix).
    """
    if decoder_depth < 0:
        raise ValueError(f"decoder_depth must be >= 0, got {decoder_depth}")
    block = [
        f"{layer}.{param}"
        for layer in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
        for param in ("weight", "bias")
    ]
    keys = ["mask_token", "decoder_pos_embed", "decoder_embed.weight", "decoder_embed.bias"]
    keys += [f"decoder_blocks.{i}.{name}" for i in range(decoder_depth) for name in block]
    keys += ["decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"]
    return tuple(keys)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` x ``patch_size`` convolution: ``[B, 1, T, F] -> [B, T/p * F/p, D]``."""

    def __init__(self, config: AudioMAEConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, config.embed_dim, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(x), "b d t f -> b (t f) d")


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection: ``[B, L, D] -> [B, L, D]``."""

    def __init__(self, config: AudioMAEConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.embed_dim, 3 * config.embed_dim)
        self.proj = nn.Linear(config.embed_dim, config.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class Mlp(nn.Module):
    """Linear -> exact (erf) GELU -> Linear."""

    def __init__(self, config: AudioMAEConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.embed_dim, config.hidden_dim)
        self.fc2 = nn.Linear(config.hidden_dim, config.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, config: AudioMAEConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.norm_eps)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.norm_eps)
        self.mlp = Mlp(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class AudioMAEEncoder(nn.Module):
    """AudioMAE ViT encoder without masking (the official ``forward_encoder_no_mask``).

    ``pos_embed`` is a parameter (loaded from the checkpoint, initialised with
    :func:`audiomae_pos_embed`); ``cls_token`` starts at zero and the layers with PyTorch's
    default initialisation: load a checkpoint or fill them before use.
    """

    def __init__(self, config: AudioMAEConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or AudioMAEConfig()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(
            audiomae_pos_embed(config.embed_dim, config.time_patches, config.freq_patches), requires_grad=False
        )
        self.patch_embed = PatchEmbed(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.norm_eps)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """Contextual embeddings of one fbank window per item.

        Args:
            fbank: ``[B, num_frames, num_mels]`` normalised Kaldi fbank (``[B, 1024, 128]``).

        Returns:
            ``[B, 1 + num_patches, embed_dim]`` (``[B, 513, 768]``); row 0 is CLS, row
            ``1 + t * freq_patches + f`` is the patch at time ``t``, frequency ``f``.
        """
        config = self.config
        expected = (config.num_frames, config.num_mels)
        if fbank.ndim != 3 or tuple(fbank.shape[1:]) != expected:
            raise ValueError(f"fbank must have shape [B, {expected[0]}, {expected[1]}], got {tuple(fbank.shape)}")
        if fbank.dtype != self.pos_embed.dtype:
            raise ValueError(f"fbank dtype {fbank.dtype} differs from the model dtype {self.pos_embed.dtype}")
        x = self.patch_embed(fbank.unsqueeze(1)) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        contextual = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index > config.contextual_depth:
                contextual.append(self.norm(x))
        return torch.stack(contextual).mean(dim=0)
