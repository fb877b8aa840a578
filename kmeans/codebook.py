"""Codebook files in the official SemantiCodec layout: written by :func:`save_codebook`, read
by :func:`load_codebook` (for the codec's semantic quantizer too).

The official release stores a semantic vocabulary of ``V`` centroids of dimension ``D`` as a
float32 ``[V, D]`` ``.npy`` file named ``codebook_{V/2}_0.npy`` (the number is half the
vocabulary) in ``codebook_idx/combine_{512|256|128}_audioset_dominate/`` for D = 768 / 1536 /
3072 (token rates 100 / 50 / 25).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from semanticodec.atomic import atomic_write

CODEBOOK_SETS = {768: "combine_512_audioset_dominate", 1536: "combine_256_audioset_dominate", 3072: "combine_128_audioset_dominate"}
"""Official codebook folder per feature dimension D."""


def codebook_filename(vocab_size: int) -> str:
    """``codebook_{V/2}_0.npy`` for an even vocabulary size ``V``."""
    if vocab_size < 2 or vocab_size % 2:
        raise ValueError(f"the official file name needs an even vocabulary size >= 2, got {vocab_size}")
    return f"codebook_{vocab_size // 2}_0.npy"


def official_codebook_name(vocab_size: int, dim: int) -> str:
    """``combine_*_audioset_dominate/codebook_{V/2}_0.npy``: the official codebook set and file of ``[V, D]``."""
    if dim not in CODEBOOK_SETS:
        raise ValueError(f"no official codebook set for D={dim}; expected one of {sorted(CODEBOOK_SETS)}")
    return f"{CODEBOOK_SETS[dim]}/{codebook_filename(vocab_size)}"


def official_codebook_path(root: str | os.PathLike, vocab_size: int, dim: int) -> Path:
    """``ROOT/codebook_idx/combine_*_audioset_dominate/codebook_{V/2}_0.npy`` for ``[V, D]``."""
    return Path(root) / "codebook_idx" / official_codebook_name(vocab_size, dim)


def load_codebook(path: str | os.PathLike) -> np.ndarray:
    """A codebook ``.npy`` file as float32 ``[V, D]`` (no pickle); ValueError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such codebook file")
    try:
        codebook = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: cannot read codebook: not a readable .npy array ({err})") from None
    if codebook.ndim != 2 or min(codebook.shape) == 0:
        raise ValueError(f"{path}: a codebook must be a non-empty 2-D float array [V, D], got shape {codebook.shape}")
    if codebook.dtype.kind != "f":
        raise ValueError(f"{path}: a codebook must be floating point (a 2-D float array), got {codebook.dtype}")
    return np.array(codebook, dtype=np.float32)


def save_codebook(centroids: np.ndarray, path: str | os.PathLike) -> Path:
    """Write float32 ``[V, D]`` centroids atomically and return the file written.

    ``path`` is a ``.npy`` file, or a directory that receives ``codebook_{V/2}_0.npy``.
    """
    centroids = np.asarray(centroids)
    if centroids.ndim != 2 or centroids.dtype.kind != "f" or min(centroids.shape) == 0:
        raise ValueError(f"a codebook must be a non-empty 2-D float array, got {centroids.dtype} {centroids.shape}")
    if not np.isfinite(centroids).all():
        raise ValueError("the codebook contains NaN or infinite values")
    path = Path(path)
    if path.suffix != ".npy":
        path = path / codebook_filename(len(centroids))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, overwrite=True) as file:
        np.save(file, np.ascontiguousarray(centroids, dtype=np.float32), allow_pickle=False)
    return path
