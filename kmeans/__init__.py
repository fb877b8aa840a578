"""Large-scale k-means for SemantiCodec's semantic codebooks.

- :func:`train`: Lloyd k-means over ``.npy`` shards, arrays or a stream, on CPU (FAISS),
  GPUs (FAISS or torch) and over ``torch.distributed`` ranks, with checkpoint and resume.
- :func:`assign`: exact nearest-centroid search (the semantic quantizer's formula).
- :func:`save_codebook`: the official ``codebook_{V/2}_0.npy`` float32 ``[V, D]`` layout.
- :func:`extract_features`: AudioMAE (or any) features of an audio folder as shards.
"""

from kmeans.assign import assign
from kmeans.codebook import codebook_filename, official_codebook_path, save_codebook
from kmeans.engines import ENGINES, select_engine
from kmeans.features import extract_features
from kmeans.init import kmeans_plusplus
from kmeans.trainer import KMeansResult, TrainConfig, train

__all__ = [
    "ENGINES",
    "KMeansResult",
    "TrainConfig",
    "assign",
    "codebook_filename",
    "extract_features",
    "kmeans_plusplus",
    "official_codebook_path",
    "save_codebook",
    "select_engine",
    "train",
]
