"""Paths of the files shipped in ``semanticodec/data`` (importable without torch)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = Path(__file__).with_name("data") / "default_model.safetensors"
"""The small model trained by this project and shipped in the package (see data/MODEL_CARD.md):
used when no official checkpoint is configured; it also carries its entropy tables."""
