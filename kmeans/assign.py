"""Exact nearest-centroid assignment (squared L2), batched to bound memory.

The ``torch`` engine computes ``||x||^2 + ||c||^2 - 2 x.c`` in the input precision, the same
formula as the official SemantiCodec quantizer (``quant_mem_efficient``), so float32 inputs
give its argmin (up to ties within float32 resolution). It runs wherever the tensors are
(CPU or CUDA). The ``faiss`` engine uses ``faiss.IndexFlatL2`` on the CPU: the same argmin
except at near-ties, and faster on CPU for large ``K``.

``batch_size`` bounds memory only: blocks of different sizes may use different BLAS kernels,
which can change a distance in its last bit (and so an id only at an exact float32 tie).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

AssignEngine = Literal["torch", "faiss"]


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory when it is contiguous and writable, else a copy."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or infinity in ``t``: its minimum and maximum (which NaN propagates to) are finite.
    A reduction, without the full-size boolean temporary of ``isfinite(t).all()``."""
    return t.numel() == 0 or bool(torch.isfinite(torch.stack(torch.aminmax(t))).all())


def _assign_torch(x: torch.Tensor, c: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c_sq = c.new_empty(c.shape[0])
    for start in range(0, c.shape[0], batch_size):  # per block of rows: no [K, D] temporary, the same sums
        block = c[start : start + batch_size]
        torch.sum(block * block, dim=1, out=c_sq[start : start + block.shape[0]])
    ids = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    dist = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        # (||x||^2 + ||c||^2) + (-2 x.c): the same bits as ||x||^2 + ||c||^2 - 2 x.c, fewer temporaries
        d = (xb * xb).sum(dim=1, keepdim=True) + c_sq
        d.add_((xb @ c.T).mul_(-2.0))
        best, idx = d.min(dim=1)
        ids[start : start + xb.shape[0]] = idx
        dist[start : start + xb.shape[0]] = best
    return ids, dist


def _assign_faiss(x: np.ndarray, c: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss  # only this engine needs it: the semantic quantizer of the codec does not load FAISS

    index = faiss.IndexFlatL2(c.shape[1])
    index.add(np.ascontiguousarray(c, dtype=np.float32))
    ids = np.empty(x.shape[0], dtype=np.int64)
    dist = np.empty(x.shape[0], dtype=np.float32)
    for start in range(0, x.shape[0], batch_size):
        d, i = index.search(np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32), 1)
        ids[start : start + len(i)] = i[:, 0]
        dist[start : start + len(d)] = d[:, 0]
    return ids, dist


def assign(
    vectors: np.ndarray | torch.Tensor,
    centroids: np.ndarray | torch.Tensor,
    batch_size: int = 4096,
    engine: AssignEngine = "torch",
) -> tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each vector.

    Args:
        vectors: ``[N, D]`` float array (numpy or torch).
        centroids: ``[K, D]`` float array (numpy or torch; converted to the kind, device and
            dtype of ``vectors``).
        batch_size: rows of ``vectors`` per distance block (memory is ``batch_size * K`` floats).
        engine: ``"torch"`` (the quantizer's formula, any device) or ``"faiss"`` (float32 on CPU).

    Returns:
        ``(ids, sqdist)``: int64 ``[N]`` indices into ``centroids`` and the squared distances
        ``[N]``, of the same kind (numpy or torch, same device) as ``vectors``.
    """
    as_numpy = isinstance(vectors, np.ndarray)
    x = _tensor(vectors) if as_numpy else vectors
    c = _tensor(centroids) if isinstance(centroids, np.ndarray) else centroids
    if not isinstance(x, torch.Tensor) or not isinstance(c, torch.Tensor):
        raise ValueError("vectors and centroids must be numpy arrays or torch tensors")
    if x.ndim != 2 or c.ndim != 2:
        raise ValueError(f"vectors and centroids must be 2-D, got {tuple(x.shape)} and {tuple(c.shape)}")
    if x.shape[1] != c.shape[1]:
        raise ValueError(f"dimension mismatch: vectors have D={x.shape[1]}, centroids D={c.shape[1]}")
    if c.shape[0] == 0:
        raise ValueError("centroids is empty")
    if not x.dtype.is_floating_point or not c.dtype.is_floating_point:
        raise ValueError(f"vectors and centroids must be floating point, got {x.dtype} and {c.dtype}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if engine not in ("torch", "faiss"):
        raise ValueError(f"engine must be 'torch' or 'faiss', got {engine!r}")
    with torch.inference_mode():
        if not _all_finite(x) or not _all_finite(c):
            raise ValueError("vectors or centroids contain NaN or infinite values")
        if engine == "faiss":
            ids_np, dist_np = _assign_faiss(x.detach().cpu().numpy(), c.detach().cpu().numpy(), int(batch_size))
            if as_numpy:
                return ids_np, dist_np
            return torch.from_numpy(ids_np).to(x.device), torch.from_numpy(dist_np).to(x.device)
        ids, dist = _assign_torch(x, c.to(device=x.device, dtype=x.dtype), int(batch_size))
    if as_numpy:
        return ids.numpy(), dist.numpy()
    return ids, dist
