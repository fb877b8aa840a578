"""Greedy k-means++ initialisation on a sample (deterministic for a given generator state,
sample and torch device)."""

from __future__ import annotations

import math

import numpy as np
import torch


def _sqdist(x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``[n, m]`` squared distances between rows of ``x`` and ``c``, clamped at 0."""
    return (x_sq[:, None] + (c * c).sum(dim=1)[None, :] - 2.0 * (x @ c.T)).clamp_min_(0.0)


def kmeans_plusplus(
    x: np.ndarray, k: int, rng: np.random.Generator, device: torch.device | str = "cpu", trials: int | None = None
) -> np.ndarray:
    """Greedy k-means++ (Arthur & Vassilvitskii 2007, with local trials as in scikit-learn).

    The first centroid is a uniformly chosen row; each next one is the best (lowest total
    potential) of ``trials`` candidates drawn with probability proportional to the squared
    distance to the nearest centroid chosen so far. Cost: ``2 n k D trials`` flops.

    Args:
        x: float32 ``[n, D]`` sample, ``n >= k``.
        k: number of centroids.
        rng: source of the random draws.
        device: torch device for the distance computations.
        trials: candidates per step; default ``2 + floor(ln k)``.

    Returns:
        float32 ``[k, D]`` centroids (rows of ``x``).
    """
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"cannot choose k={k} initial centroids from {n} vectors")
    trials = trials or 2 + int(math.log(k))
    with torch.inference_mode():
        x = np.ascontiguousarray(x, dtype=np.float32)
        xt = torch.from_numpy(x if x.flags.writeable else x.copy()).to(device)
        x_sq = (xt * xt).sum(dim=1)
        chosen = [int(rng.integers(n))]
        closest = _sqdist(xt, x_sq, xt[chosen])[:, 0]
        for _ in range(1, k):
            cumulative = torch.cumsum(closest.double(), dim=0)
            total = float(cumulative[-1])
            if total > 0.0:
                targets = torch.from_numpy(rng.random(trials) * total).to(device)
                candidates = torch.searchsorted(cumulative, targets, right=True).clamp_(max=n - 1)
            else:
                candidates = torch.from_numpy(rng.integers(n, size=trials)).to(device)
            trial = torch.minimum(closest[:, None], _sqdist(xt, x_sq, xt[candidates]))
            best = int(torch.argmin(trial.double().sum(dim=0)))
            closest = trial[:, best].contiguous()
            chosen.append(int(candidates[best]))
        return xt[chosen].cpu().numpy()
