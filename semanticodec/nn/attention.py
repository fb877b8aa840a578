"""Transformer blocks of the latent-diffusion UNet (LDM / AudioLDM ``attention.py`` layout).

A :class:`SpatialTransformer` turns a feature map ``[B, C, H, W]`` into ``H*W`` tokens,
applies pre-LayerNorm transformer blocks (self-attention, then cross- or self-attention,
then a GEGLU feed-forward) and adds the result back to its input.

State-dict keys follow the official modules: ``norm``, ``proj_in``,
``transformer_blocks.{i}.{attn1,ff,attn2,norm1,norm2,norm3}``, ``proj_out``;
attention layers hold ``to_q``, ``to_k``, ``to_v`` (no bias) and ``to_out.0``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class CrossAttention(nn.Module):
    """Multi-head attention of ``x`` over ``context`` (over ``x`` itself when ``context`` is None).

    ``x``: ``[B, L, query_dim]``; ``context``: ``[B, N, context_dim]``; output ``[B, L, query_dim]``.
    Scores are scaled by ``dim_head ** -0.5``; no masking.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner_dim = heads * dim_head
        self.heads = heads
        self.context_dim = context_dim if context_dim is not None else query_dim
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(self.context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(self.context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(dropout))

        self.cache_context = False
        self._cached: tuple[torch.Tensor, int | None, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q = self._heads(self.to_q(x))
        k, v = self._keys_values(x) if context is None else self._context_keys_values(context)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b n (h d) -> b h n d", h=self.heads)

    def _keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._heads(self.to_k(source)), self._heads(self.to_v(source))

    def _context_keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the context; with ``cache_context`` set, those of the last
        context tensor are reused while the same tensor comes again, unchanged (diffusion
        sampling passes one context to every step; an inference tensor, which keeps no
        version counter, is taken as unchanged)."""
        if not self.cache_context or torch.is_grad_enabled():
            return self._keys_values(context)
        version = None if context.is_inference() else context._version  # inference tensors have no counter
        cached = self._cached
        if cached is None or cached[0] is not context or cached[1] != version:
            k, v = self._keys_values(context)
            self._cached = cached = (context, version, k, v)
        return cached[2], cached[3]


@contextlib.contextmanager
def cached_context(module: nn.Module) -> Iterator[None]:
    """Within this block every :class:`CrossAttention` in ``module`` computes the keys and
    values of a context tensor once and reuses them while the same tensor is passed again
    (the result is unchanged; only where grad is off). The cache is dropped on exit."""
    layers = [m for m in module.modules() if isinstance(m, CrossAttention) and not m.cache_context]
    for layer in layers:
        layer.cache_context = True
    try:
        yield
    finally:
        for layer in layers:
            layer.cache_context = False
            layer._cached = None


class GEGLU(nn.Module):
    """``Linear(dim_in, 2*dim_out)`` split into value and gate: ``value * gelu(gate)``."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward ``dim -> mult*dim -> dim`` (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        inner_dim = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner_dim), nn.Dropout(dropout), nn.Linear(inner_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-LN block: ``x += attn1(norm1 x)``; ``x += attn2(norm2 x, context)``; ``x += ff(norm3 x)``.

    ``attn1`` is self-attention; ``attn2`` attends to the context when ``context_dim`` is
    given and is a second self-attention otherwise. ``x``: ``[B, L, dim]``.
    """

    def __init__(
        self, dim: int, heads: int, dim_head: int, context_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, dim_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """GroupNorm (eps 1e-6) -> 1x1 conv -> transformer blocks over ``H*W`` tokens -> 1x1 conv, residual.

    ``context_dim=None`` builds a self-attention-only transformer, which must be called
    without context; otherwise ``context`` ``[B, N, context_dim]`` is required.
    ``x``: ``[B, channels, H, W]`` -> same shape.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        depth: int = 1,
        context_dim: int | None = None,
        num_groups: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner_dim = heads * dim_head
        self.context_dim = context_dim
        self.norm = nn.GroupNorm(num_groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner_dim, kernel_size=1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner_dim, heads, dim_head, context_dim, dropout) for _ in range(depth)
        )
        self.proj_out = nn.Conv2d(inner_dim, channels, kernel_size=1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if (context is None) != (self.context_dim is None):
            raise ValueError(
                "SpatialTransformer: context must be given exactly when the block was built with "
                f"a context_dim (context_dim={self.context_dim}, context given: {context is not None})"
            )
        height, width = x.shape[-2:]
        h = rearrange(self.proj_in(self.norm(x)), "b c h w -> b (h w) c")
        for block in self.transformer_blocks:
            h = block(h, context)
        h = rearrange(h, "b (h w) c -> b c h w", h=height, w=width)
        return self.proj_out(h) + x
