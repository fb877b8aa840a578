"""semanticodec: the SemantiCodec ultra-low-bitrate semantic audio codec.

``SemantiCodec`` (:mod:`semanticodec.codec`) and ``EncodedAudio`` (:mod:`semanticodec.encoded`)
are imported on first use, so that the command line and the bitstream tools start without
loading the model code (``EncodedAudio`` alone needs no torch).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_HOMES = {"EncodedAudio": "semanticodec.encoded", "SemantiCodec": "semanticodec.codec"}

__all__ = ["EncodedAudio", "SemantiCodec", "__version__"]


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'semanticodec' has no attribute {name!r}")
