"""Semantic tokens: AudioMAE patch features stacked to the token rate, then the nearest k-means centroid.

One 10.24 s window gives 512 AudioMAE patch vectors ``[B, 512, 768]`` in time-major order
(index ``t * 8 + f``, 64 time columns of 0.16 s, 8 frequency bands). Lower token rates stack
neighbouring patches on the channel axis:

- 100 tokens/s: no stacking, ``[B, 512, 768]``.
- 50 tokens/s (``concat_1x2``): frequency pairs (f = 2j, 2j + 1), ``[B, 256, 1536]``, index ``t * 4 + j``.
- 25 tokens/s (``concat_2x2``): 2 x 2 (time, frequency) blocks, channel order (2t', 2j),
  (2t', 2j + 1), (2t' + 1, 2j), (2t' + 1, 2j + 1), ``[B, 128, 3072]``, index ``t' * 4 + j``.

:class:`SemanticQuantizer` maps each stacked vector to the index of its nearest centroid
(squared L2, float32 like the official ``quant_mem_efficient``) and back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from semanticodec.constants import stack_factor
from semanticodec.kmeans.assign import assign
from semanticodec.kmeans.codebook import load_codebook


def stack_patches(features: torch.Tensor, token_rate: int, freq_patches: int = 8) -> torch.Tensor:
    """Stack AudioMAE patch features to the token rate, in the official channel order.

    Args:
        features: ``[B, P, D]`` patch features without CLS, index ``t * freq_patches + f``
            (``[B, 512, 768]``).
        token_rate: 100, 50 or 25 tokens per second.
        freq_patches: frequency patches per time column (8).

    Returns:
        ``[B, P / K, D * K]`` with K = :func:`stack_factor` (``token_rate``); for K > 1 the
        sequence index is ``t' * (freq_patches / 2) + j``.
    """
    factor = stack_factor(token_rate)
    if features.ndim != 3:
        raise ValueError(f"features must be 3-D [B, P, D], got shape {tuple(features.shape)}")
    if freq_patches < 1 or features.shape[1] % freq_patches:
        raise ValueError(f"patch count {features.shape[1]} is not a multiple of freq_patches {freq_patches}")
    if factor == 1:
        return features
    if freq_patches % 2:
        raise ValueError(f"token_rate {token_rate} pairs frequency patches; freq_patches {freq_patches} is odd")
    grid = rearrange(features, "b (t f) d -> b t f d", f=freq_patches)
    if factor == 2:
        return rearrange(grid, "b t (j f2) d -> b (t j) (f2 d)", f2=2)
    if grid.shape[1] % 2:
        raise ValueError(f"token_rate 25 pairs time columns; {grid.shape[1]} columns is odd")
    return rearrange(grid, "b (t t2) (j f2) d -> b (t j) (t2 f2 d)", t2=2, f2=2)


ASSIGN_ROWS = 256
"""Feature rows per distance block of :meth:`SemanticQuantizer.quantize` (two ``[256, V]``
float32 buffers: 32 MB at V = 16384, 128 MB at V = 65536)."""


class SemanticQuantizer(nn.Module):
    """Nearest-centroid tokenizer over a fixed k-means codebook ``[V, D]``.

    The codebook is a non-persistent float32 buffer: it follows ``.to(device)`` but is not in
    the state dict (the official codebook is a separate ``.npy`` file).
    """

    codebook: torch.Tensor

    def __init__(self, codebook: torch.Tensor | np.ndarray) -> None:
        super().__init__()
        codebook = torch.as_tensor(codebook)
        if codebook.ndim != 2 or codebook.shape[0] < 1 or codebook.shape[1] < 1:
            raise ValueError(f"codebook must be a non-empty 2-D array [V, D], got shape {tuple(codebook.shape)}")
        if not codebook.is_floating_point():
            raise ValueError(f"codebook must be floating point, got {codebook.dtype}")
        if not codebook.is_meta and not torch.isfinite(codebook).all():
            raise ValueError("codebook contains NaN or infinite values")
        self.register_buffer("codebook", codebook.to(torch.float32).clone(), persistent=False)

    @classmethod
    def from_npy(cls, path: str | Path, dim: int | None = None) -> SemanticQuantizer:
        """Load an official codebook file (``codebook_{V/2}_0.npy``, float32 ``[V, D]``).

        ``dim``, when given, is the expected D (768, 1536 or 3072 for 100, 50, 25 tokens/s).
        """
        array = load_codebook(path)
        if dim is not None and array.shape[1] != dim:
            raise ValueError(f"{path}: codebook dimension {array.shape[1]} != expected {dim}")
        return cls(torch.from_numpy(array))

    @property
    def vocab_size(self) -> int:
        """Number of centroids V."""
        return self.codebook.shape[0]

    @property
    def dim(self) -> int:
        """Centroid dimension D."""
        return self.codebook.shape[1]

    def quantize(self, features: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, N]`` int64 of features ``[B, N, D]``: argmin of ``|x|^2 + |c|^2 - 2 x.c``.

        The distance is computed in the features' precision (float32 as in the official code).
        """
        if features.ndim != 3 or features.shape[-1] != self.dim:
            raise ValueError(f"features must have shape [B, N, {self.dim}], got {tuple(features.shape)}")
        if not features.is_floating_point():
            raise ValueError(f"features must be floating point, got {features.dtype}")
        batch, length, _ = features.shape
        if batch * length == 0:
            return torch.zeros(batch, length, dtype=torch.int64, device=features.device)
        ids, _ = assign(features.reshape(batch * length, self.dim), self.codebook, batch_size=ASSIGN_ROWS)
        return ids.reshape(batch, length)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Centroids ``[B, N, D]`` float32 of token ids ``[B, N]`` (integers in ``[0, V)``)."""
        if ids.ndim != 2:
            raise ValueError(f"ids must be 2-D [B, N], got shape {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"ids must be an integer tensor, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(
                f"ids must lie in [0, {self.vocab_size}), got range [{int(ids.min())}, {int(ids.max())}]"
            )
        return F.embedding(ids.long().to(self.codebook.device), self.codebook)
