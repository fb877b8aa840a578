"""Exact nearest-centroid assignment (squared L2), batched to bound memory.

The distance is computed as ``||x||^2 + ||c||^2 - 2 x.c`` in the input precision, the same
formula as the official SemantiCodec quantizer, so float32 inputs give its argmin (up to
ties within float32 resolution).
"""

from __future__ import annotations

import numpy as np
import torch


def _assign_torch(x: torch.Tensor, c: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c_sq = (c * c).sum(dim=1)
    ids = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    dist = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        d = (xb * xb).sum(dim=1, keepdim=True) + c_sq - 2.0 * (xb @ c.T)
        best, idx = d.min(dim=1)
        ids[start : start + xb.shape[0]] = idx
        dist[start : start + xb.shape[0]] = best
    return ids, dist


def assign(vectors, centroids, batch_size: int = 4096):
    """Nearest centroid of each vector.

    Args:
        vectors: ``[N, D]`` float array (numpy or torch).
        centroids: ``[K, D]`` float array of the same kind and dtype.
        batch_size: rows of ``vectors`` per distance block (memory is ``batch_size * K`` floats).

    Returns:
        ``(ids, sqdist)``: int64 ``[N]`` indices into ``centroids`` and the squared distances
        ``[N]``, of the same kind (numpy or torch, same device) as ``vectors``.
    """
    as_numpy = isinstance(vectors, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(vectors)) if as_numpy else vectors
    c = torch.from_numpy(np.ascontiguousarray(centroids)) if isinstance(centroids, np.ndarray) else centroids
    if x.ndim != 2 or c.ndim != 2:
        raise ValueError(f"vectors and centroids must be 2-D, got {tuple(x.shape)} and {tuple(c.shape)}")
    if x.shape[1] != c.shape[1]:
        raise ValueError(f"dimension mismatch: vectors have D={x.shape[1]}, centroids D={c.shape[1]}")
    if c.shape[0] == 0:
        raise ValueError("centroids is empty")
    c = c.to(device=x.device, dtype=x.dtype)
    with torch.inference_mode():
        ids, dist = _assign_torch(x, c, max(1, int(batch_size)))
    if as_numpy:
        return ids.numpy(), dist.numpy()
    return ids, dist
