"""semanticodec: the SemantiCodec ultra-low-bitrate semantic audio codec.

``SemantiCodec`` and ``EncodedAudio`` are imported on first use, so that the command line and
the bitstream tools start without loading the model code.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["EncodedAudio", "SemantiCodec", "__version__"]


def __getattr__(name: str):
    if name in ("EncodedAudio", "SemantiCodec"):
        from semanticodec import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'semanticodec' has no attribute {name!r}")
