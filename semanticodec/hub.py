"""Official weights from the Hugging Face hub: fetched on first use, verified, converted once.

An official configuration (token rate R, semantic vocabulary V) needs three files of
:data:`~semanticodec.released.REPO_ID` at the pinned
:data:`~semanticodec.released.REVISION` (with vocabulary 16384: 2.4 GB at 100 tok/s, 4.2 GB
at 50, 8.3 GB at 25):
``semanticodec_tokenrate_{R}/encoder.ckpt``, ``semanticodec_tokenrate_{R}/decoder.ckpt`` and
``codebook_idx/combine_{G}_audioset_dominate/codebook_{V/2}_0.npy``; only those are fetched.

- Files live in the standard Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
  ``~/.cache/huggingface/hub``) and are fetched with ``huggingface_hub`` (``$HF_ENDPOINT``, tokens,
  progress bars and the resumption of a cut connection are its own). A cached file costs no
  request: the revision is a commit hash.
- Offline (``offline=True``, or ``HF_HUB_OFFLINE=1``) nothing touches the network; missing
  weights raise :class:`WeightsUnavailable`, a one-line message naming the configuration and
  the ``semanticodec download`` command.
- Before conversion every file is checked against the hash that names its cache blob (the
  LFS sha256); a corrupted file is fetched again, never loaded.
- The three files are converted once into a float32 inference-only safetensors file
  (``converted/tr{R}-v{V}-{digest}.safetensors`` in the repository's cache folder, the digest
  taken over the three files' hashes; :func:`converted_path`); later loads read only that file
  (no pickle). The loading itself is :func:`semanticodec.weights.official_model`: this module
  finds, fetches and checks files and builds no model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from semanticodec.official import (
    HF_REPO_DIR,
    CheckpointError,
    OfficialFiles,
    hf_cache_dirs,
    official_paths,
)
from semanticodec.released import REPO_ID, REVISION

DEFAULT_VOCAB = 16384
"""The semantic vocabulary of the official weights used when none is named."""

CONVERTED_DIR = "converted"
"""Folder of the converted safetensors files inside the repository's cache folder."""

_HASH_CHUNK = 1 << 23


class WeightsUnavailable(CheckpointError):
    """The official weights of a configuration are neither cached nor reachable."""


def download_command(token_rate: int, semantic_vocab_size: int) -> str:
    """The command line that fetches one configuration ahead of time."""
    return f"semanticodec download --token-rate {token_rate} --semantic-vocab-size {semantic_vocab_size}"


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` when given, else whether ``$HF_HUB_OFFLINE`` is set to a true value."""
    if offline is not None:
        return offline
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def cache_dir() -> Path:
    """The Hugging Face hub cache directory in effect (read from the environment at each call)."""
    return hf_cache_dirs()[0]


def fetch(
    token_rate: int, semantic_vocab_size: int, offline: bool | None = None, force: bool = False
) -> OfficialFiles:
    """Local paths of the three files of one configuration: cached, else downloaded
    (``force``: downloaded again). Raises :class:`WeightsUnavailable` when a file is neither
    cached nor reachable, :class:`CheckpointError` for other hub failures."""
    return OfficialFiles(
        *(_hub_file(name, token_rate, semantic_vocab_size, offline, force) for name in official_paths(token_rate, semantic_vocab_size))
    )


def _hub_file(filename: str, token_rate: int, vocab: int, offline: bool | None, force: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    offline = is_offline(offline)
    try:
        path = hf_hub_download(
            REPO_ID, filename, revision=REVISION, cache_dir=cache_dir(), endpoint=os.environ.get("HF_ENDPOINT") or None,
            local_files_only=offline, force_download=force,
        )
    except LocalEntryNotFoundError:
        why = "offline mode is on" if offline else "the hub cannot be reached"
        raise WeightsUnavailable(
            f"official weights for {token_rate} tok/s, vocabulary {vocab} are not in the cache ({cache_dir()}) and "
            f"{why}: run `{download_command(token_rate, vocab)}` on a connected machine"
        ) from None
    except Exception as err:  # huggingface_hub and its HTTP client raise many types
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot fetch {REPO_ID}/{filename}@{REVISION[:7]}: {message}") from None
    return Path(path)


def expected_hash(path: Path) -> str:
    """The hash a cached file must have: the name of the blob it links to (an LFS sha256, or a
    git blob sha1 for small files)."""
    return Path(os.path.realpath(path)).name


def is_intact(path: Path) -> bool:
    """Whether the cached file ``path`` has the content its blob name promises (reads it all).

    A blob not named by a hash (a cache without symbolic links) cannot be checked and passes.
    """
    expected = expected_hash(path)
    if len(expected) == 64:
        digest = hashlib.sha256()
    elif len(expected) == 40:
        digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    else:
        return True
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == expected


def verify(token_rate: int, semantic_vocab_size: int, files: OfficialFiles, offline: bool | None = None) -> None:
    """Check each of ``files`` against its hash; a corrupted file is fetched again (offline: a
    :class:`CheckpointError` names it and the download command)."""
    names = official_paths(token_rate, semantic_vocab_size)
    for name, path in zip(names, (files.encoder, files.decoder, files.codebook)):
        if is_intact(path):
            continue
        if is_offline(offline):
            raise CheckpointError(
                f"{path} is corrupted (its hash is not {expected_hash(path)}); fetch it again with "
                f"`{download_command(token_rate, semantic_vocab_size)}` on a connected machine"
            )
        _hub_file(name, token_rate, semantic_vocab_size, offline, force=True)
        if not is_intact(path):
            raise CheckpointError(f"{path} is still corrupted after fetching it again from {REPO_ID}")


def converted_path(token_rate: int, semantic_vocab_size: int, files: OfficialFiles) -> Path:
    """Where the converted safetensors file of ``files`` lives: named by their hashes."""
    key = "\n".join(expected_hash(p) for p in (files.encoder, files.decoder, files.codebook))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / HF_REPO_DIR / CONVERTED_DIR / f"tr{token_rate}-v{semantic_vocab_size}-{digest}.safetensors"
