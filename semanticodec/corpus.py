"""Tokenize an audio corpus into a sharded token dataset (resumable, batched, distributed).

Layout of a dataset folder::

    meta.json                  format version, token rate, vocabularies, model id/name, dtype
    shard_RRR_NNNNN.npy        token pairs [rows, 2] of many files, concatenated (uint16 when
                               both vocabularies fit, else int64); RRR is the writing rank
    index_RRR.jsonl            one JSON line per file written by rank RRR
    index.jsonl                all ranks' lines merged, sorted by file (written at the end)
    failures.tsv               files that could not be tokenized, with the reason

An index line is ``{"file", "shard", "offset", "length", "duration", "sample_count",
"sample_rate"}``: the file's tokens are rows ``offset : offset + length`` of ``shard``;
``duration`` is in seconds, ``sample_count`` and ``sample_rate`` describe the original audio
(lines of the previous release, with ``num_samples``, are still read).

A shard is written to a temporary name, synced and renamed; then its index lines are
appended (one write, synced). A killed run therefore leaves complete shards and index
lines, at worst a shard without index lines (deleted on resume) or a torn last index line
(dropped on resume). Resuming skips every file already indexed.

Data parallel: with ``torch.distributed`` initialised (``torchrun``; gloo on CPU, NCCL on
GPU) rank r of a world of size n takes files r, r + n, r + 2n, ... of the sorted corpus
list and writes its own shards and index part; rank 0 merges the index at the end. The
same works without torch.distributed: run ``tokenize_corpus(rank=r, world_size=n)`` in n
processes on a shared file system, then :func:`finalize` once.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from semanticodec.atomic import append_synced, atomic_write
from semanticodec.audio import Downmix, prepare, read_audio
from semanticodec.constants import SAMPLE_RATE, WINDOW_SAMPLES
from semanticodec.dataset import FORMAT_NAME, FORMAT_VERSION, read_meta, upgrade_index_entry
from semanticodec.safety import printable

if TYPE_CHECKING:
    from semanticodec.codec import SemantiCodec

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
MANIFEST_EXTENSIONS = (".tsv", ".csv", ".jsonl")
DEFAULT_SHARD_ROWS = 1 << 20
_SHARD = re.compile(r"^shard_(\d{3})_(\d{5})\.npy$")
_INDEX_PART = re.compile(r"^index_(\d{3})\.jsonl$")
_FAILURE_PART = re.compile(r"^failures_(\d{3})\.tsv$")


@dataclass(frozen=True)
class CorpusFile:
    """One input: ``name`` (its key in the index: the path relative to the corpus folder or
    as written in the manifest) and ``path`` (where to read it)."""

    name: str
    path: Path


@dataclass(frozen=True)
class TokenizeReport:
    """Outcome of a run on this rank: files encoded now, skipped (already done), failed
    (``(name, reason)``), seconds of audio encoded and wall time."""

    encoded: int
    skipped: int
    failures: tuple[tuple[str, str], ...]
    audio_seconds: float
    wall_seconds: float
    rank: int = 0
    world_size: int = 1


def list_corpus(source: str | os.PathLike) -> list[CorpusFile]:
    """Files of a folder (recursive; wav, flac, ogg, mp3) or of a manifest (TSV, CSV or
    JSONL with a ``file`` or ``path`` column; relative paths resolve against the manifest's
    folder), sorted by name. Raises ValueError for an empty corpus, an unknown manifest
    type, a manifest without a file column, or a file listed twice."""
    root = Path(source)
    if root.is_dir():
        files = [
            CorpusFile(p.relative_to(root).as_posix(), p)
            for p in root.rglob("*")
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
        ]
    elif root.is_file():
        files = [CorpusFile(name, _resolve(root.parent, name)) for name in _manifest_names(root)]
    else:
        raise FileNotFoundError(f"corpus {root}: no such folder or manifest")
    if not files:
        raise ValueError(f"corpus {root} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    files.sort(key=lambda f: f.name)
    for a, b in zip(files, files[1:]):
        if a.name == b.name:
            raise ValueError(f"corpus {root} lists {a.name} twice")
    return files


def _resolve(base: Path, name: str) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path


def _manifest_names(manifest: Path) -> list[str]:
    suffix = manifest.suffix.lower()
    if suffix not in MANIFEST_EXTENSIONS:
        raise ValueError(f"manifest {manifest}: unknown type {suffix!r} (use a folder or {', '.join(MANIFEST_EXTENSIONS)})")
    with open(manifest, newline="", encoding="utf-8") as file:
        if suffix == ".jsonl":
            rows = []
            for number, line in enumerate(file, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as error:
                        raise ValueError(f"manifest {manifest} line {number}: not JSON ({error})") from None
        else:
            rows = list(csv.DictReader(file, delimiter="\t" if suffix == ".tsv" else ","))
    names = []
    for number, row in enumerate(rows, 1):
        value = row.get("file", row.get("path")) if isinstance(row, dict) else None
        if not isinstance(value, str) or not value:
            raise ValueError(f"manifest {manifest} entry {number} has no 'file' or 'path' column")
        names.append(value)
    return names


def shard_dtype(semantic_vocab_size: int, acoustic_vocab_size: int) -> np.dtype:
    """Smallest storage dtype of the pairs: uint16 when both vocabularies fit, else int64."""
    return np.dtype(np.uint16 if max(semantic_vocab_size, acoustic_vocab_size) <= 1 << 16 else np.int64)


def _meta(codec: SemantiCodec) -> dict[str, Any]:
    config = codec.config
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "token_rate": config.token_rate,
        "semantic_vocab_size": config.semantic_vocab_size,
        "acoustic_vocab_size": config.acoustic_vocab_size,
        "model_id": config.model_id.hex(),
        "model_name": config.name,
        "compat": codec.compat,
        "dtype": shard_dtype(config.semantic_vocab_size, config.acoustic_vocab_size).name,
    }


def _read_index_part(path: Path, repair: bool) -> list[dict[str, Any]]:
    """Lines of an index part; a torn last line (killed writer) is dropped (and cut off with ``repair``)."""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    entries = []
    for line in data[:keep].decode("utf-8").splitlines():
        if line.strip():
            entries.append(upgrade_index_entry(json.loads(line)))
    if repair and keep < len(data):
        with open(path, "r+b") as file:
            file.truncate(keep)
    return entries


def read_entries(root: str | os.PathLike) -> list[dict[str, Any]]:
    """All index lines of a dataset (from the per-rank parts), sorted by file name."""
    entries = []
    for path in sorted(Path(root).glob("index_*.jsonl")):
        if _INDEX_PART.match(path.name):
            entries.extend(_read_index_part(path, repair=False))
    entries.sort(key=lambda e: e["file"])
    return entries


def _prepare_folder(root: Path, meta: dict[str, Any], rank: int | None) -> None:
    """Create or check ``meta.json``; repair torn index parts and delete unindexed shards,
    old failure lists and temporary files of ``rank`` (all ranks when None). A folder that
    holds files but no ``meta.json`` is not a dataset: it is refused, never cleaned."""
    if root.is_dir() and not (root / "meta.json").exists() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty and not a token dataset (no meta.json); use a new or empty folder")
    root.mkdir(parents=True, exist_ok=True)
    if (root / "meta.json").exists():
        old = read_meta(root)
        for key in ("token_rate", "semantic_vocab_size", "acoustic_vocab_size", "model_id", "compat", "dtype"):
            if old.get(key) != meta[key]:
                raise ValueError(f"{root} was tokenized with {key}={old.get(key)!r}, not {meta[key]!r}; use another --out folder")
    else:
        with atomic_write(root / "meta.json", overwrite=True) as file:
            file.write((json.dumps(meta, indent=2) + "\n").encode())
    for path in root.glob("index_*.jsonl"):
        if (m := _INDEX_PART.match(path.name)) and rank in (None, int(m.group(1))):
            _read_index_part(path, repair=True)
    indexed = {e["shard"] for e in read_entries(root)}
    for path in root.iterdir():
        m = _SHARD.match(path.name) or _FAILURE_PART.match(path.name)
        if m and rank in (None, int(m.group(1))) and path.name not in indexed:
            path.unlink()
        elif rank is None and path.name.startswith(".") and path.name.endswith(".tmp"):
            path.unlink()
    (root / "index.jsonl").unlink(missing_ok=True)


@dataclass
class _ShardWriter:
    """Accumulates encoded files of one rank and writes them as shards with their index lines."""

    root: Path
    rank: int
    dtype: np.dtype
    shard_rows: int
    blocks: list[np.ndarray] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    number: int = 0

    def __post_init__(self) -> None:
        numbers = [int(m.group(2)) for p in self.root.iterdir() if (m := _SHARD.match(p.name)) and int(m.group(1)) == self.rank]
        self.number = max(numbers, default=-1) + 1

    def add(self, name: str, tokens: np.ndarray, sample_count: int, sample_rate: int) -> None:
        self.pending.append(
            {
                "file": name,
                "offset": self.rows,
                "length": int(tokens.shape[0]),
                "duration": sample_count / sample_rate,
                "sample_count": int(sample_count),
                "sample_rate": int(sample_rate),
            }
        )
        self.blocks.append(tokens.astype(self.dtype))
        self.rows += tokens.shape[0]
        if self.rows >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        name = f"shard_{self.rank:03d}_{self.number:05d}.npy"
        data = np.concatenate(self.blocks) if self.blocks else np.zeros((0, 2), self.dtype)
        with atomic_write(self.root / name, overwrite=True) as file:
            np.save(file, data)
        lines = "".join(json.dumps({**e, "shard": name}) + "\n" for e in self.pending)
        append_synced(self.root / f"index_{self.rank:03d}.jsonl", lines)
        self.number += 1
        self.blocks, self.pending, self.rows = [], [], 0


def _distributed() -> tuple[int, int, Callable[[], None]]:
    """(rank, world size, barrier) of torch.distributed when initialised, else (0, 1, no-op)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), dist.barrier
    return 0, 1, lambda: None


def tokenize_corpus(
    codec: SemantiCodec,
    source: str | os.PathLike | Sequence[CorpusFile],
    out: str | os.PathLike,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    batch_windows: int | None = None,
    progress: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
) -> TokenizeReport:
    """Encode every file of ``source`` (folder, manifest or file list) into the dataset ``out``.

    Args:
        codec: a :class:`semanticodec.codec.SemantiCodec`.
        shard_rows: token rows per shard (a shard is written once it holds at least this many).
        batch_windows: 10.24 s windows gathered from consecutive files per ``encode`` call
            (default 4 × the codec's batch size); windows of many files share forward passes.
        progress: show a progress bar (files, with audio hours).
        rank, world_size: this process's share of the files; default from torch.distributed
            (rank 0 of 1 when not initialised). Without torch.distributed, call :func:`finalize`
            after all ranks are done.

    Files already in the index are skipped; a file that cannot be read or encoded is listed
    in ``failures.tsv`` and skipped. Returns this rank's :class:`TokenizeReport`.
    """
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    dist_rank, dist_world, barrier = _distributed()
    rank = dist_rank if rank is None else rank
    world_size = dist_world if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    batch_windows = batch_windows or 4 * codec.batch_size
    if batch_windows < 1:
        raise ValueError(f"batch_windows must be >= 1, got {batch_windows}")
    files = list_corpus(source) if isinstance(source, (str, os.PathLike)) else sorted(source, key=lambda f: f.name)
    root = Path(out)
    meta = _meta(codec)
    start = time.perf_counter()
    if dist_world > 1:
        if rank == 0:
            _prepare_folder(root, meta, None)
        barrier()
    else:
        _prepare_folder(root, meta, rank if world_size > 1 else None)
    done = {e["file"] for e in read_entries(root)}
    mine = [f for i, f in enumerate(files) if i % world_size == rank]
    todo = [f for f in mine if f.name not in done]
    writer = _ShardWriter(root, rank, np.dtype(meta["dtype"]), shard_rows)
    failures: list[tuple[str, str]] = []
    seconds = 0.0
    bar = tqdm(total=len(todo), desc=f"tokenize[{rank}]" if world_size > 1 else "tokenize", unit="file", disable=not progress)
    batch: list[tuple[CorpusFile, np.ndarray, int, int]] = []
    windows = 0

    def run_batch() -> None:
        nonlocal seconds
        for item, result in zip(batch, _encode(codec, [b[1] for b in batch], failures, [b[0].name for b in batch])):
            bar.update(1)
            if result is not None:
                writer.add(item[0].name, result, item[2], item[3])
                seconds += item[2] / item[3]
        bar.set_postfix(hours=f"{seconds / 3600:.3f}", failed=len(failures))
        batch.clear()

    downmix: Downmix = "first" if codec.compat == "official" else "mean"
    for item in todo:
        try:
            raw, sr = read_audio(item.path)
            audio = prepare(raw, sr, downmix=downmix, name=str(item.path))
        except (OSError, ValueError) as error:
            failures.append((item.name, str(error)))
            bar.update(1)
            continue
        batch.append((item, audio, raw.shape[-1], sr))
        windows += -(-len(audio) // WINDOW_SAMPLES)
        if windows >= batch_windows:
            run_batch()
            windows = 0
    if batch:
        run_batch()
    writer.flush()
    bar.close()
    if failures:
        _write_failures(root / f"failures_{rank:03d}.tsv", failures)
    barrier()
    if world_size == 1 or (rank == 0 and dist_world > 1):
        finalize(root)
    barrier()
    return TokenizeReport(
        encoded=len(todo) - len(failures),
        skipped=len(mine) - len(todo),
        failures=tuple(failures),
        audio_seconds=seconds,
        wall_seconds=time.perf_counter() - start,
        rank=rank,
        world_size=world_size,
    )


def _encode(
    codec: SemantiCodec, audio: list[np.ndarray], failures: list[tuple[str, str]], names: list[str]
) -> list[np.ndarray | None]:
    """Tokens of each 16 kHz input, batched; if the batch fails, each input alone (failures recorded)."""
    if len(audio) > 1:
        try:
            return [e.tokens for e in codec.encode(audio, sample_rate=SAMPLE_RATE)]
        except (ValueError, RuntimeError):
            pass  # isolate the failing input below
    results: list[np.ndarray | None] = []
    for name, a in zip(names, audio):
        try:
            results.append(codec.encode([a], sample_rate=SAMPLE_RATE)[0].tokens)
        except (ValueError, RuntimeError) as error:
            failures.append((name, str(error)))
            results.append(None)
    return results


def finalize(root: str | os.PathLike) -> tuple[int, int]:
    """Merge the index parts into ``index.jsonl`` (sorted by file) and the failure parts into
    ``failures.tsv`` (files indexed meanwhile are left out); returns (files, failures)."""
    root = Path(root)
    entries = read_entries(root)
    names = [e["file"] for e in entries]
    for a, b in zip(names, names[1:]):
        if a == b:
            raise ValueError(f"{root}: {a} is indexed twice")
    with atomic_write(root / "index.jsonl", overwrite=True) as file:
        file.write("".join(json.dumps(e) + "\n" for e in entries).encode())
    failed = sorted((name, reason) for name, reason in read_failures(root, parts=True) if name not in set(names))
    (root / "failures.tsv").unlink(missing_ok=True)
    if failed:
        _write_failures(root / "failures.tsv", failed)
    return len(entries), len(failed)


def _write_failures(path: Path, failures: Sequence[tuple[str, str]]) -> None:
    text = io.StringIO()
    table = csv.writer(text, delimiter="\t", lineterminator="\n")
    table.writerow(("file", "error"))
    table.writerows((name, " ".join(reason.split())) for name, reason in failures)
    with atomic_write(path, overwrite=True) as file:
        file.write(text.getvalue().encode())


def read_failures(root: str | os.PathLike, parts: bool = False) -> list[tuple[str, str]]:
    """(file, reason) of ``failures.tsv`` (or of the per-rank parts with ``parts``)."""
    paths = [p for p in sorted(Path(root).glob("failures_*.tsv")) if _FAILURE_PART.match(p.name)] if parts else [Path(root) / "failures.tsv"]
    rows: list[tuple[str, str]] = []
    for path in paths:
        if path.exists():
            with open(path, newline="", encoding="utf-8") as file:
                rows.extend((row["file"], row["error"]) for row in csv.DictReader(file, delimiter="\t"))
    return rows


def print_report(report: TokenizeReport, out: Any = None) -> None:
    """One summary line, then the failed files with their reasons (to ``out``, default stderr)."""
    out = sys.stderr if out is None else out
    speed = report.audio_seconds / report.wall_seconds if report.wall_seconds else 0.0
    rank = f"rank {report.rank}/{report.world_size}: " if report.world_size > 1 else ""
    print(
        f"{rank}{report.encoded} files encoded ({report.audio_seconds / 3600:.3f} h of audio, {speed:.1f}x real time), "
        f"{report.skipped} already done, {len(report.failures)} failed",
        file=out,
    )
    for name, reason in report.failures:
        print(f"  failed: {printable(name)}: {printable(reason)}", file=out)
