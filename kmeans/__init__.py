"""Large-scale k-means for SemantiCodec's semantic codebooks (installed as ``semanticodec.kmeans``).

- :func:`fit`: Lloyd k-means over ``.npy`` shards, arrays or a stream, on CPU (FAISS),
  GPUs (FAISS or torch) and over ``torch.distributed`` ranks, with checkpoint and resume.
- :func:`assign`: exact nearest-centroid search (the semantic quantizer's formula).
- :func:`save_codebook` / :func:`load_codebook`: the official ``codebook_{V/2}_0.npy`` float32
  ``[V, D]`` layout.
- :func:`extract_features`: AudioMAE (or any) features of an audio folder as shards.

The other names are imported from their modules on first use, so that the semantic quantizer
can use :func:`assign` without loading FAISS or the trainer.
"""

from __future__ import annotations

import importlib

from semanticodec.kmeans.assign import assign as assign  # eager: the function shadows its module's name

_HOMES = {
    "codebook_filename": "codebook",
    "load_codebook": "codebook",
    "official_codebook_name": "codebook",
    "official_codebook_path": "codebook",
    "save_codebook": "codebook",
    "ENGINES": "engines",
    "select_engine": "engines",
    "extract_features": "features",
    "kmeans_plusplus": "init",
    "KMeansConfig": "trainer",
    "KMeansResult": "trainer",
    "fit": "trainer",
    "TrainConfig": "trainer",  # deprecated: KMeansConfig
    "train": "trainer",  # deprecated: fit
}

__all__ = sorted([*_HOMES, "assign"])


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
