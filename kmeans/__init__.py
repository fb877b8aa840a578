"""Large-scale k-means for SemantiCodec's semantic codebooks."""

from kmeans.assign import assign

__all__ = ["assign"]
