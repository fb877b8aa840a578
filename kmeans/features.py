"""Feature extraction for k-means: a folder of audio → float32 ``.npy`` shards and a manifest.

Every audio file under ``audio_dir`` (recursively, sorted by relative path) is loaded as
16 kHz mono float32 and passed to an *extractor*, a callable
``extract(waveform [N] float32) -> features [T, D] float32`` (for SemantiCodec: the stacked
AudioMAE features of one token rate). Features of consecutive files are stacked into shards
``features_000000.npy, ...`` of about ``shard_rows`` rows (a file is never split across shards).

``manifest.jsonl`` in the output folder has one JSON object per line:

- ``{"file": REL_PATH, "shard": NAME, "offset": ROW, "count": ROWS}`` for each file (``shard``
  is null when a file gives no rows);
- ``{"file": REL_PATH, "error": MESSAGE}`` for a file that could not be read;
- ``{"commit": NAME, "rows": ROWS}`` after the lines of each shard (``commit`` is null for a
  group without a shard).

A shard is written atomically before its lines, and the lines of a group are valid only up to
their ``commit`` line, so an interrupted run is resumed by running the same command again:
incomplete groups are dropped and their files extracted again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from semanticodec.atomic import append_synced, atomic_write
from semanticodec.audio import AudioError, load_audio

Extractor = Callable[[np.ndarray], np.ndarray]
"""``waveform [N] float32 at 16 kHz -> features [T, D] float32``."""

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au"})
MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class FeatureSummary:
    """What one call of :func:`extract_features` did."""

    files: int
    """Files extracted by this call."""
    skipped: int
    """Files already in the manifest (done by an earlier call)."""
    failed: int
    """Files that could not be read by this call."""
    vectors: int
    """Feature rows written by this call."""
    shards: tuple[Path, ...]
    """Shards written by this call."""


def list_audio(audio_dir: str | os.PathLike) -> list[Path]:
    """Audio files under ``audio_dir`` (by suffix, recursively), sorted by relative path."""
    root = Path(audio_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    return sorted((p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()), key=lambda p: p.relative_to(root).as_posix())


def read_manifest(out_dir: str | os.PathLike) -> list[dict]:
    """Committed manifest entries of ``out_dir``; drops (and truncates) lines after the last commit."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return []
    raw = path.read_bytes()
    entries, committed, committed_bytes, position = [], 0, 0, 0
    for line in raw.splitlines(keepends=True):
        position += len(line)
        if not line.endswith(b"\n"):
            break
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break
        entries.append(entry)
        if "commit" in entry:
            committed, committed_bytes = len(entries), position
    if committed_bytes != len(raw):
        with open(path, "r+b") as f:
            f.truncate(committed_bytes)
    return entries[:committed]


def _check_features(features, name: str, dim: int | None) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2 or features.dtype.kind != "f":
        raise ValueError(f"{name}: the extractor must return a 2-D float array [T, D], got {features.dtype} {features.shape}")
    if dim is not None and features.shape[1] != dim:
        raise ValueError(f"{name}: the extractor returned D={features.shape[1]}, earlier features have D={dim}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name}: the extractor returned NaN or infinite values")
    return np.ascontiguousarray(features, dtype=np.float32)


def extract_features(
    audio_dir: str | os.PathLike,
    extractor: Extractor,
    out_dir: str | os.PathLike,
    *,
    shard_rows: int = 65536,
    loader: Callable[[Path], np.ndarray] = load_audio,
    progress: bool = True,
) -> FeatureSummary:
    """Extract features of every audio file of ``audio_dir`` into shards in ``out_dir`` (resumable).

    Args:
        audio_dir: folder searched recursively for audio files.
        extractor: ``waveform [N] float32 (16 kHz) -> [T, D] float32``.
        out_dir: output folder (created); shards ``features_*.npy`` and ``manifest.jsonl``.
        shard_rows: a shard is written once it holds at least this many rows.
        loader: ``path -> waveform [N] float32 at 16 kHz``; its :class:`AudioError` marks a
            file as failed (recorded in the manifest) instead of stopping the run.
        progress: show a progress bar.
    """
    if isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1:
        raise ValueError(f"shard_rows must be a positive integer, got {shard_rows!r}")
    root, out = Path(audio_dir), Path(out_dir)
    files = list_audio(root)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    done_entries = read_manifest(out)
    done = {e["file"] for e in done_entries if "file" in e}
    shard_index = sum(1 for e in done_entries if e.get("commit"))
    dim = None
    if shard_index:
        dim = int(np.load(out / f"features_{shard_index - 1:06d}.npy", mmap_mode="r", allow_pickle=False).shape[1])
    todo = [p for p in files if p.relative_to(root).as_posix() not in done]

    rows: list[np.ndarray] = []
    pending: list[dict] = []
    buffered = 0
    written: list[Path] = []
    extracted = failed = vectors = 0

    def flush() -> None:
        nonlocal rows, pending, buffered, shard_index
        name = None
        if buffered:
            name = f"features_{shard_index:06d}.npy"
            with atomic_write(out / name, overwrite=True) as file:
                np.save(file, np.concatenate(rows), allow_pickle=False)
            written.append(out / name)
            shard_index += 1
        for entry in pending:
            if entry.get("count"):
                entry["shard"] = name
        append_synced(manifest, "".join(json.dumps(e, sort_keys=True) + "\n" for e in [*pending, {"commit": name, "rows": buffered}]))
        rows, pending, buffered = [], [], 0

    for path in tqdm(todo, desc="features", unit="file", disable=not progress):
        rel = path.relative_to(root).as_posix()
        try:
            waveform = loader(path)
        except AudioError as err:
            pending.append({"file": rel, "error": str(err)})
            failed += 1
            continue
        features = _check_features(extractor(np.asarray(waveform, dtype=np.float32)), rel, dim)
        dim = features.shape[1]
        pending.append({"file": rel, "shard": None, "offset": buffered, "count": len(features)})
        if len(features):
            rows.append(features)
            buffered += len(features)
        extracted += 1
        vectors += len(features)
        if buffered >= shard_rows:
            flush()
    if pending:
        flush()
    return FeatureSummary(extracted, len(files) - len(todo), failed, vectors, tuple(written))
