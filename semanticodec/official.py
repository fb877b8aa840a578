"""The official SemantiCodec release: where its files are, which files a model needs, and the
state-dict keys they must hold.

Layout (the ``haoheliu/SemantiCodec`` model repository)::

    ROOT/semanticodec_tokenrate_{100,50,25}/{encoder,decoder}.ckpt
    ROOT/codebook_idx/combine_{512,256,128}_audioset_dominate/codebook_{V/2}_0.npy

ROOT is given by path, by the ``SEMANTICODEC_CHECKPOINT`` environment variable, or found in
the Hugging Face cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or ``~/.cache/huggingface/hub``,
``models--haoheliu--SemantiCodec/snapshots/*``). Nothing is ever downloaded.

The files are read by :mod:`semanticodec.weights` (without executing pickled code) into the
model, whose :meth:`~semanticodec.model.SemantiCodecModel.load_official` maps the keys.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from semanticodec.constants import TOKEN_RATES, stack_factor
from semanticodec.kmeans.codebook import official_codebook_name
from semanticodec.nn.vit import AudioMAEConfig

ENV_VAR = "SEMANTICODEC_CHECKPOINT"
HF_REPO_DIR = "models--haoheliu--SemantiCodec"
OFFICIAL_VOCAB_SIZES = (4096, 8192, 16384, 32768)


class CheckpointError(ValueError):
    """Weights that are missing, unreadable, or do not fit the model (official or this package's files)."""


@dataclass(frozen=True)
class OfficialFiles:
    """Paths of the three files an official (token rate, vocabulary) model needs."""

    encoder: Path
    decoder: Path
    codebook: Path


@lru_cache(maxsize=3)
def official_schema(token_rate: int) -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """The official state-dict keys, shapes and dtypes: ``{"encoder": [...], "decoder": [...]}``."""
    if token_rate not in TOKEN_RATES:
        raise CheckpointError(f"token rate must be one of {TOKEN_RATES}, got {token_rate}")
    path = Path(__file__).with_name("schema") / f"official_tr{token_rate}.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    return {part: [(k, tuple(s), d) for k, s, d in data[part]] for part in ("encoder", "decoder")}


def hf_cache_dirs() -> list[Path]:
    """Hugging Face hub cache directories, most specific first."""
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def _snapshots(repo_dir: Path) -> list[Path]:
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return []
    return sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)


def _as_root(path: Path) -> Path:
    """Resolve a user path to the repository root (accepts a tokenrate folder or an HF cache)."""
    if (path / HF_REPO_DIR).is_dir():
        path = path / HF_REPO_DIR
    if path.name == HF_REPO_DIR:
        snaps = _snapshots(path)
        if not snaps:
            raise CheckpointError(f"{path}: Hugging Face cache folder without snapshots")
        return snaps[0]
    if path.name.startswith("semanticodec_tokenrate_") and not (path / "codebook_idx").is_dir():
        return path.parent
    return path


def find_official_root(path: str | os.PathLike | None = None) -> Path | None:
    """The official checkpoint root: ``path``, else ``$SEMANTICODEC_CHECKPOINT``, else the HF cache.

    Returns None when nothing is configured or cached; raises :class:`CheckpointError` when
    an explicitly given path does not exist.
    """
    for source, value in (("checkpoint", path), (ENV_VAR, os.environ.get(ENV_VAR))):
        if value:
            p = Path(value).expanduser()
            if not p.exists():
                raise CheckpointError(f"{source} path {p} does not exist")
            return _as_root(p)
    for cache in hf_cache_dirs():
        snaps = _snapshots(cache / HF_REPO_DIR)
        if snaps:
            return snaps[0]
    return None


def official_files(root: str | os.PathLike, token_rate: int, semantic_vocab_size: int) -> OfficialFiles:
    """The encoder, decoder and codebook paths of one official model; errors name what is missing."""
    if token_rate not in TOKEN_RATES:
        raise CheckpointError(f"token rate must be one of {TOKEN_RATES}, got {token_rate}")
    if semantic_vocab_size not in OFFICIAL_VOCAB_SIZES:
        raise CheckpointError(f"official semantic vocabularies are {OFFICIAL_VOCAB_SIZES}, got {semantic_vocab_size}")
    root = Path(root)
    rate_dir = root / f"semanticodec_tokenrate_{token_rate}"
    codebook_name = official_codebook_name(semantic_vocab_size, AudioMAEConfig().embed_dim * stack_factor(token_rate))
    candidates = [root / "codebook_idx" / codebook_name, rate_dir / "codebook_idx" / codebook_name, root / codebook_name]
    codebook = next((c for c in candidates if c.is_file()), candidates[0])
    files = OfficialFiles(rate_dir / "encoder.ckpt", rate_dir / "decoder.ckpt", codebook)
    for name, p in (("encoder", files.encoder), ("decoder", files.decoder), ("semantic codebook", files.codebook)):
        if not p.is_file():
            raise CheckpointError(f"official {name} file not found: {p}")
    return files


def check_keys(
    state: Mapping[str, torch.Tensor], expected: list[tuple[str, tuple[int, ...], str]], what: str
) -> None:
    """Strict check of ``state`` against ``(key, shape, dtype)`` entries; errors name the keys.

    Shapes must match; 0-d flags and counters (``initted``, ``num_updates``) may be stored
    with other dtypes or as ``[1]`` by other library versions and are only checked for presence.
    """
    want = {k: s for k, s, _ in expected}
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:5])}")
    wrong = [
        f"{k} {tuple(state[k].shape)} != {want[k]}"
        for k in want
        if k in state and tuple(state[k].shape) != want[k] and len(want[k]) > 0
    ]
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es), e.g. {'; '.join(wrong[:3])}")
    if problems:
        raise CheckpointError(f"{what} does not match the official key schema: " + "; ".join(problems))
