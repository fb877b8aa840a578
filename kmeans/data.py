"""Training data for k-means: ``.npy`` shards read from disk, in-memory arrays, or a stream.

A :class:`Dataset` is a random-access list of 2-D shards ``[rows_i, D]`` that all have the same
``D``: ``.npy`` files (the header is parsed once; row ranges are read from the file straight
into the chunk buffer, so a pass over the data keeps only one chunk resident, and scattered
rows are gathered through a short-lived memory map) or arrays held in memory. Rows are
numbered globally in shard order.

A stream (any iterator of ``[m, D]`` arrays) can only be read once; :func:`reservoir_sample`
keeps a uniform sample of a fixed size from it in one pass.

Every read returns C-contiguous float32 and raises :class:`ValueError` on NaN or infinite values,
naming the shard and row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch

ArrayLike: TypeAlias = np.ndarray | torch.Tensor
DataSpec: TypeAlias = str | os.PathLike | ArrayLike | Sequence[str | os.PathLike | ArrayLike] | Iterable[ArrayLike]


def _as_numpy(array: ArrayLike, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array or torch tensor, got {type(array).__name__}")
    return array


def _check_matrix(shape: tuple[int, ...], dtype: np.dtype, name: str) -> None:
    if len(shape) != 2:
        raise ValueError(f"{name}: vectors must be a 2-D array [N, D], got shape {shape}")
    if dtype.kind != "f":
        raise ValueError(f"{name}: vectors must be floating point, got dtype {dtype}")
    if shape[0] == 0:
        raise ValueError(f"{name}: the shard is empty (0 vectors)")
    if shape[1] == 0:
        raise ValueError(f"{name}: vectors have dimension 0")


def check_finite(block: np.ndarray, name: str, first_row: int | np.ndarray = 0) -> None:
    """Raise ValueError if ``block`` holds NaN/Inf; ``first_row`` (or per-row numbers) locates it."""
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        row = int(first_row[bad]) if isinstance(first_row, np.ndarray) else first_row + bad
        raise ValueError(f"{name}: row {row} contains NaN or infinite values")


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class _NpyShard:
    """A ``.npy`` file of shape ``[rows, D]``; rows are read on demand."""

    def __init__(self, path: Path):
        self.name = str(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such shard file")
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version not in _HEADER_READERS:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, fortran, dtype = _HEADER_READERS[version](f)
                self.offset = f.tell()
        except (ValueError, OSError) as err:
            raise ValueError(f"{path}: not a readable .npy file ({err})") from None
        _check_matrix(shape, dtype, self.name)
        if fortran and shape[0] > 1 and shape[1] > 1:
            raise ValueError(f"{path}: Fortran-ordered arrays are not supported; save np.ascontiguousarray(x)")
        if os.path.getsize(path) < self.offset + shape[0] * shape[1] * dtype.itemsize:
            raise ValueError(f"{path}: the file is truncated")
        self.path = path
        self.rows, self.dim = int(shape[0]), int(shape[1])
        self.dtype = dtype

    def read_into(self, start: int, stop: int, out: np.ndarray) -> None:
        """Rows ``[start, stop)`` into the float32 array ``out`` (directly from the file if float32)."""
        target = out if self.dtype == np.float32 else np.empty((stop - start, self.dim), dtype=self.dtype)
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.offset + start * self.dim * self.dtype.itemsize)
            view, done = target.data.cast("B"), 0
            while done < len(view):
                got = f.readinto(view[done:])
                if not got:
                    raise ValueError(f"{self.name}: unexpected end of file")
                done += got
        if target is not out:
            out[...] = target

    def take(self, rows: np.ndarray) -> np.ndarray:
        mapped = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=(self.rows, self.dim))
        try:
            return np.array(mapped[rows])
        finally:
            del mapped


class _ArrayShard:
    """An in-memory ``[rows, D]`` array."""

    def __init__(self, array: np.ndarray, name: str):
        _check_matrix(array.shape, array.dtype, name)
        self.name = name
        self.array = array
        self.rows, self.dim = int(array.shape[0]), int(array.shape[1])

    def read_into(self, start: int, stop: int, out: np.ndarray) -> None:
        """Rows ``[start, stop)`` into the float32 array ``out``."""
        out[...] = self.array[start:stop]

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.array[rows]


@dataclass(frozen=True)
class _Piece:
    shard: int
    start: int
    stop: int


class Dataset:
    """Random-access shards with a global row numbering (shard order, then row order)."""

    def __init__(self, shards: Sequence[_NpyShard | _ArrayShard]):
        if not shards:
            raise ValueError("no shards given")
        dims = {s.dim for s in shards}
        if len(dims) > 1:
            first = shards[0]
            other = next(s for s in shards if s.dim != first.dim)
            raise ValueError(f"mismatched dimensions: {first.name} has D={first.dim} but {other.name} has D={other.dim}")
        self.shards = list(shards)
        self.dim = shards[0].dim
        self.rows = np.array([s.rows for s in shards], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.rows)])
        self.total = int(self.offsets[-1])

    def _pieces(self, start: int, stop: int) -> list[_Piece]:
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pieces = []
        shard = first
        while start < stop:
            end = min(stop, int(self.offsets[shard + 1]))
            pieces.append(_Piece(shard, start - int(self.offsets[shard]), end - int(self.offsets[shard])))
            start, shard = end, shard + 1
        return pieces

    def read(self, start: int, stop: int) -> np.ndarray:
        """Global rows ``[start, stop)`` as a new float32 array ``[stop - start, D]``."""
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        for p in self._pieces(start, stop):
            shard = self.shards[p.shard]
            block = out[p.start + int(self.offsets[p.shard]) - start : p.stop + int(self.offsets[p.shard]) - start]
            shard.read_into(p.start, p.stop, block)
            check_finite(block, shard.name, p.start)
        return out

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Global rows ``indices`` (sorted ascending) as float32 ``[len(indices), D]``."""
        out = np.empty((len(indices), self.dim), dtype=np.float32)
        which = np.searchsorted(self.offsets, indices, side="right") - 1
        bounds = np.searchsorted(which, np.arange(len(self.shards) + 1))
        for shard_index in np.unique(which):
            a, b = bounds[shard_index], bounds[shard_index + 1]
            local = indices[a:b] - self.offsets[shard_index]
            shard = self.shards[shard_index]
            out[a:b] = shard.take(local)
            check_finite(out[a:b], shard.name, local)
        return out

    def signature(self) -> list[int]:
        """Rows per shard: identifies the data layout in checkpoints."""
        return [int(r) for r in self.rows]


def _shard(item: str | os.PathLike | ArrayLike, index: int) -> list[_NpyShard | _ArrayShard]:
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix == ".npy" and p.is_file())
            if not files:
                raise ValueError(f"{path}: the directory holds no .npy shards")
            return [_NpyShard(p) for p in files]
        return [_NpyShard(path)]
    return [_ArrayShard(_as_numpy(item, f"array {index}"), f"array {index}")]


def open_dataset(data: DataSpec) -> Dataset | Iterator[ArrayLike]:
    """A :class:`Dataset` for paths and arrays, or an iterator for a one-pass stream.

    ``data`` is a ``.npy`` path, a directory of ``.npy`` shards (sorted by name), an array
    ``[N, D]`` (numpy or torch), a list of any of these, or any other iterable of arrays
    (treated as a stream).
    """
    if isinstance(data, (str, os.PathLike, np.ndarray, torch.Tensor)):
        return Dataset(_shard(data, 0))
    if isinstance(data, Sequence):
        if len(data) == 0:
            raise ValueError("no shards given")
        return Dataset([s for i, item in enumerate(data) for s in _shard(item, i)])
    if isinstance(data, Iterable):
        return iter(data)
    raise ValueError(f"unsupported training data of type {type(data).__name__}")


def reservoir_sample(stream: Iterable[ArrayLike], size: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Uniform sample without replacement of at most ``size`` rows of a stream, in one pass.

    Algorithm R: row ``t`` (0-based) replaces a random slot with probability ``size / (t + 1)``.
    If the stream has at most ``size`` rows they are all kept, in order.

    Returns:
        ``(sample, seen)``: float32 ``[min(size, seen), D]`` and the number of rows in the stream.
    """
    reservoir: np.ndarray | None = None
    seen = 0
    for index, item in enumerate(stream):
        name = f"stream array {index}"
        block = _as_numpy(item, name)
        _check_matrix(block.shape, block.dtype, name)
        block = np.ascontiguousarray(block, dtype=np.float32)
        check_finite(block, name)
        if reservoir is None:
            reservoir = np.empty((size, block.shape[1]), dtype=np.float32)
        elif block.shape[1] != reservoir.shape[1]:
            raise ValueError(f"mismatched dimensions: {name} has D={block.shape[1]}, earlier arrays D={reservoir.shape[1]}")
        fill = min(max(size - seen, 0), len(block))
        reservoir[seen : seen + fill] = block[:fill]
        rest = block[fill:]
        if len(rest):
            positions = np.arange(seen + fill, seen + len(block), dtype=np.int64)
            slots = rng.integers(0, positions + 1)
            keep = np.flatnonzero(slots < size)
            last = len(keep) - 1 - np.unique(slots[keep][::-1], return_index=True)[1]
            reservoir[slots[keep][last]] = rest[keep][last]
        seen += len(block)
    if reservoir is None:
        raise ValueError("the stream of training vectors is empty")
    return reservoir[: min(size, seen)], seen
