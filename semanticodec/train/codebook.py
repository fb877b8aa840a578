"""Stage 2: the semantic codebook — k-means over the trained AudioMAE's token-rate features.

Features come from random 10.24 s windows of the training audio, exactly as the codec
computes them at inference (fbank → AudioMAE → stacking); padded rows are dropped. The
centroids are trained with :mod:`kmeans` (FAISS on CPU or GPU, torch fallback) and written
in the official ``codebook_{V/2}_0.npy`` layout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from semanticodec import kmeans
from semanticodec.atomic import atomic_write
from semanticodec.config import ModelConfig
from semanticodec.constants import WINDOW_SAMPLES
from semanticodec.features import audiomae_fbank
from semanticodec.model import SemantiCodecModel
from semanticodec.train.data import CropSampler


@dataclass(frozen=True)
class CodebookTrainConfig:
    """``windows`` random 10.24 s windows (batches of ``batch_size``) give the feature set;
    k-means runs ``niter`` Lloyd iterations with at most ``max_points_per_centroid`` × V
    vectors (FAISS's default subsampling)."""

    windows: int
    batch_size: int = 8
    niter: int = 20
    max_points_per_centroid: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.windows < 1 or self.batch_size < 1 or self.niter < 1 or self.max_points_per_centroid < 1:
            raise ValueError(f"windows, batch_size, niter and max_points_per_centroid must be >= 1: {self}")


PRESETS: dict[str, CodebookTrainConfig] = {
    "official": CodebookTrainConfig(windows=200_000, batch_size=64),
    "small": CodebookTrainConfig(windows=1200, batch_size=8),
    "tiny": CodebookTrainConfig(windows=4, batch_size=2, niter=2),
}
"""``small``: 1200 windows (3.4 h of audio, ~600k vectors) in a few minutes on 2 CPU cores."""


@torch.no_grad()
def collect_features(
    model_config: ModelConfig,
    audiomae: Mapping[str, Tensor],
    sampler: CropSampler,
    windows: int,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Token-rate AudioMAE features ``[M, D]`` float32 of ``windows`` crops from ``sampler``
    (crops of 10.24 s; rows after the end of the audio are dropped)."""
    if sampler.crop_samples < WINDOW_SAMPLES:
        raise ValueError(f"codebook windows need crops of >= {WINDOW_SAMPLES} samples, got {sampler.crop_samples}")
    model = SemantiCodecModel(model_config)
    model.load_weights(audiomae, ("audiomae.",))
    model.to(device).eval()
    n_tokens = model.tokens_per_window
    rows: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=windows, desc="codebook features", unit="window", dynamic_ncols=True)
    done, step = 0, 0
    while done < windows:
        batch = sampler.batch(step).to(device)
        step += 1
        features = model.semantic_features(audiomae_fbank(batch.window(), model.config.audiomae.num_frames))
        valid = batch.window_tokens(n_tokens)
        take = min(len(features), windows - done)
        for item, count in zip(features[:take], valid.tolist()):
            rows.append(item[:count].float().cpu().numpy())
        done += take
        if bar is not None:
            bar.update(take)
    if bar is not None:
        bar.close()
    return np.concatenate(rows)


def train_codebook(
    model_config: ModelConfig,
    audiomae: Mapping[str, Tensor],
    sampler: CropSampler,
    config: CodebookTrainConfig,
    out: str | os.PathLike,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> Path:
    """Collect features and train the ``[V, D]`` semantic codebook; returns the ``.npy``
    written into ``out`` (``codebook_{V/2}_0.npy``). The k-means state is checkpointed in
    ``out/kmeans.npz``, so an interrupted run resumes."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    features_path = out / "features.npy"
    if features_path.is_file():
        features = np.load(features_path, allow_pickle=False)
    else:
        features = collect_features(model_config, audiomae, sampler, config.windows, device, progress)
        with atomic_write(features_path, overwrite=True) as file:
            np.save(file, features, allow_pickle=False)
    vocab = model_config.semantic_vocab_size
    if len(features) < vocab:
        raise ValueError(f"{len(features)} feature vectors cannot train {vocab} centroids: use more windows")
    result = kmeans.fit(
        features, vocab, niter=config.niter, seed=config.seed, max_points_per_centroid=config.max_points_per_centroid,
        state_file=out / "kmeans.npz", progress=progress,
    )
    return kmeans.save_codebook(result.centroids, out)
