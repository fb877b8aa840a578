"""The released weights, named by model id without loading any model code (no torch).

The official weights are :data:`REPO_ID` at the pinned :data:`REVISION`; their twelve
configurations have the model ids :data:`OFFICIAL_MODEL_IDS` (``ModelConfig.official(R, V).model_id``,
checked by the tests). The small model bundled with the package (:data:`DEFAULT_MODEL`) is
recognised by the fingerprint of the configuration stored in its safetensors metadata.
:func:`weights_name` is what ``semanticodec info`` and the codec commands print as ``weights``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from functools import lru_cache
from pathlib import Path

REPO_ID = "haoheliu/SemantiCodec"
REVISION = "3b6e7408ee4febb738db732875e8ece31cf5bdd2"
"""The pinned commit of :data:`REPO_ID` ("Upload 31 files", 2024-06-02): the one place the revision is named."""

DEFAULT_MODEL = Path(__file__).with_name("data") / "default_model.safetensors"
"""The small model trained by this project and shipped in the package (see data/MODEL_CARD.md):
used when no official weights are named, cached or reachable, or by name (``model="small"``);
it also carries its entropy tables."""

OFFICIAL_MODEL_IDS: dict[tuple[int, int], str] = {
    (100, 4096): "e9418d1e096c8e30b0e57967c68345d9",
    (100, 8192): "45e664b96c2e4741da7ba716085e213a",
    (100, 16384): "6e25d0940ea3cad2d7c996b8c5cbf846",
    (100, 32768): "87649f4ecd0c58811f35d7eade5d8664",
    (50, 4096): "66a0fe4fe60dcd0333f7e1ca2ea27dc6",
    (50, 8192): "ac9134687a4cfaacd19094d3ac398f55",
    (50, 16384): "6ef0f7da1667a595550aea8f254a4a0f",
    (50, 32768): "2476ecb03db2aa969f85a3632078d48e",
    (25, 4096): "02fdd7988b582c05d257879122620b8e",
    (25, 8192): "15bd95c85d526b3f67cd789062f9f05c",
    (25, 16384): "2723e9a97167743905d0536819447ba8",
    (25, 32768): "095db18e1fbaaf0582c8f945d8655787",
}
"""Model id (hex) of each official configuration ``(token rate, semantic vocabulary)``."""


def weights_name(model_id: bytes) -> str:
    """Which released weights have ``model_id``: an official configuration, the bundled small
    model, or neither."""
    if not any(model_id):
        return "unspecified"
    bundled = _bundled_config()
    if bundled is not None and hashlib.sha256(bundled.encode()).digest()[:16] == model_id:
        config = json.loads(bundled)
        return (f"bundled small model ({config['name']}, {config['token_rate']} tok/s, "
                f"vocabulary {config['semantic_vocab_size']})")
    for (rate, vocab), official_id in OFFICIAL_MODEL_IDS.items():
        if bytes.fromhex(official_id) == model_id:
            return f"official {REPO_ID}@{REVISION[:7]} {rate} tok/s, vocabulary {vocab}"
    return "other (not a released model)"


@lru_cache(maxsize=1)
def _bundled_config() -> str | None:
    """The configuration JSON in the bundled model's safetensors metadata (its header: an 8-byte
    little-endian length, then JSON), or None when the package has no readable bundled model."""
    try:
        with open(DEFAULT_MODEL, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(length))
        return header["__metadata__"]["config"]
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
