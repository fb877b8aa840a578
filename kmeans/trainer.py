"""Lloyd k-means over data larger than memory, on one process or many (``torch.distributed``).

Algorithm (:func:`train`):

1. **Training set.** With ``N`` vectors available and ``S = sample_size`` (default
   ``max_points_per_centroid * k``, FAISS's rule), the training set is all ``N`` vectors when
   ``N <= S``, else a uniform sample of ``S`` of them without replacement, drawn over the global
   row numbering of all shards. A stream (iterator) is reservoir-sampled in one pass. Shards
   are read from disk chunk by chunk (``chunk_size`` vectors) at every iteration; a sample is
   read once and kept in memory (``S * D * 4`` bytes, split over the ranks).
2. **Initialisation.** ``"k-means++"`` (default): greedy k-means++ on a uniform sample of
   ``init_points_per_centroid * k`` training vectors; ``"random"``: ``k`` distinct random
   training vectors (FAISS's initialisation).
3. **Iterations.** Each rank assigns its chunks (chunks ``rank, rank + W, ...``) with the
   engine (:mod:`semanticodec.kmeans.engines`), accumulates per-centroid sums and counts, and the sums,
   counts and per-chunk objectives are all-reduced. Sums are accumulated in 64-bit fixed
   point (``round(x * 2**e)``, with ``e`` chosen from ``max |x|`` and the training size so that
   no sum can overflow), which makes the reduction exact and independent of the order and of
   the number of ranks. New centroid = sum / count.
4. **Empty clusters** are refilled as in FAISS: a cluster ``j`` is chosen with probability
   proportional to ``count_j - 1`` and split in two, ``c_j ± eps * s * (|c_j| + rms(c_j))`` with
   alternating signs ``s`` over the dimensions and ``eps = 1/1024``; its count is shared.

Determinism: the same data, seed, configuration, engine, library versions and thread
counts give a bit-identical codebook, for any number of ranks (the work is split by chunk,
and every chunk is computed the same way wherever it runs).

State files (``state_file=PATH``) are ``.npz`` files of plain arrays written atomically by
rank 0 every ``checkpoint_every`` iterations and at the end; a run given an existing
state file of the same configuration and data resumes from it and ends with the same
codebook as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from semanticodec.atomic import atomic_write
from semanticodec.kmeans.data import Dataset, DataSpec, open_dataset, reservoir_sample
from semanticodec.kmeans.distributed import Comm, get_comm
from semanticodec.kmeans.engines import ENGINES, Engine, select_engine
from semanticodec.kmeans.init import kmeans_plusplus

logger = logging.getLogger("kmeans")

SPLIT_EPS = 1.0 / 1024
"""Relative perturbation used to split a cluster when another one is empty."""
_UPDATE_ROWS = 8192


@dataclass(frozen=True)
class KMeansConfig:
    """Settings of :func:`train` (defaults suit the official 4096–32768-entry codebooks)."""

    niter: int = 20
    """Lloyd iterations."""
    seed: int = 0
    """Seed of the sampling, the initialisation and the empty-cluster splits."""
    init: Literal["k-means++", "random"] = "k-means++"
    """Initialisation (see the module documentation)."""
    max_points_per_centroid: int | None = 256
    """Training-set size is at most this times ``k`` (None: use every vector)."""
    sample_size: int | None = None
    """Explicit training-set size; overrides ``max_points_per_centroid``."""
    init_points_per_centroid: int = 16
    """k-means++ runs on at most this times ``k`` training vectors."""
    chunk_size: int = 65536
    """Vectors per assignment chunk (the unit of reading, work splitting and memory)."""
    tol: float = 0.0
    """Stop early when the objective improves by at most this fraction (0: run ``niter``)."""
    engine: str = "auto"
    """Assignment engine, one of :data:`semanticodec.kmeans.engines.ENGINES`."""
    checkpoint_every: int = 1
    """Iterations between checkpoints."""

    def __post_init__(self) -> None:
        for name in ("niter", "max_points_per_centroid", "sample_size", "init_points_per_centroid", "chunk_size", "checkpoint_every"):
            value = getattr(self, name)
            if value is None and name in ("max_points_per_centroid", "sample_size"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.init not in ("k-means++", "random"):
            raise ValueError(f"init must be 'k-means++' or 'random', got {self.init!r}")
        if not (isinstance(self.tol, (int, float)) and 0.0 <= self.tol < 1.0):
            raise ValueError(f"tol must be in [0, 1), got {self.tol!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")


@dataclass(frozen=True)
class KMeansResult:
    """The outcome of :func:`train`."""

    centroids: np.ndarray
    """float32 ``[k, D]`` codebook."""
    counts: np.ndarray
    """int64 ``[k]`` training vectors per centroid at the last assignment (after splits)."""
    objective: np.ndarray
    """float64 ``[iterations]``: sum of squared distances of the training set at each assignment."""
    iteration_seconds: np.ndarray
    """float64 ``[iterations]`` wall time of each iteration (0 for iterations loaded from a checkpoint)."""
    n_train: int
    """Vectors in the training set."""
    n_total: int
    """Vectors in the data."""
    engine: str
    """Description of the assignment engine that ran."""
    resumed_from: int
    """Iterations loaded from the checkpoint (0 for a fresh run)."""
    splits: int
    """Empty clusters refilled over the run."""

    @property
    def iterations(self) -> int:
        """Completed Lloyd iterations."""
        return len(self.objective)


class _TrainingSet:
    """The training vectors, read in chunks of ``chunk_size`` consecutive vectors."""

    def __init__(
        self,
        n: int,
        n_total: int,
        dim: int,
        chunk_size: int,
        read: Callable[[int, int], np.ndarray],
        gather: Callable[[np.ndarray], np.ndarray],
        keep_in_memory: bool,
        signature: list[int],
    ):
        self.n, self.n_total, self.dim, self.chunk_size = n, n_total, dim, chunk_size
        self.n_chunks = -(-n // chunk_size)
        self._read, self.gather, self._keep = read, gather, keep_in_memory
        self._cache: dict[int, np.ndarray] = {}
        self.signature = signature

    def chunk(self, index: int) -> np.ndarray:
        """float32 ``[m, D]`` vectors of chunk ``index``."""
        if index in self._cache:
            return self._cache[index]
        block = self._read(index * self.chunk_size, min((index + 1) * self.chunk_size, self.n))
        if self._keep:
            self._cache[index] = block
        return block


def _training_size(config: KMeansConfig, k: int) -> int | None:
    if config.sample_size is not None:
        return int(config.sample_size)
    if config.max_points_per_centroid is not None:
        return int(config.max_points_per_centroid) * k
    return None


def _training_set(source: Dataset | Iterator, k: int, config: KMeansConfig, rng: np.random.Generator, comm: Comm) -> _TrainingSet:
    size = _training_size(config, k)
    if size is not None and size < k:
        raise ValueError(f"the training set size {size} is smaller than k={k}")
    if isinstance(source, Dataset):
        if k > source.total:
            raise ValueError(f"k={k} exceeds the number of vectors N={source.total}")
        signature = source.signature()
        if size is None or size >= source.total:
            return _TrainingSet(source.total, source.total, source.dim, config.chunk_size, source.read, source.take, False, signature)
        sample = np.sort(rng.choice(source.total, size=size, replace=False))
        return _TrainingSet(
            size,
            source.total,
            source.dim,
            config.chunk_size,
            lambda a, b: source.take(sample[a:b]),
            lambda idx: source.take(sample[idx]),
            True,
            signature,
        )
    if comm.world_size > 1:
        raise ValueError("a stream of arrays cannot be split over ranks: give shard paths for a distributed run")
    if size is None:
        raise ValueError("a stream is reservoir-sampled: set sample_size or max_points_per_centroid")
    vectors, seen = reservoir_sample(source, size, rng)
    if k > seen:
        raise ValueError(f"k={k} exceeds the number of vectors N={seen}")
    return _TrainingSet(
        len(vectors), seen, vectors.shape[1], config.chunk_size, lambda a, b: vectors[a:b], lambda idx: vectors[idx], False, [seen]
    )


def _fixed_point_exponent(max_abs: float, n: int) -> int:
    """``e`` such that any sum of ``n`` values ``round(x * 2**e)`` with ``|x| <= max_abs`` fits in 2**62."""
    if max_abs == 0.0:
        return 0
    return 62 - math.frexp(max_abs * n)[1]


def _rng_state(rng: np.random.Generator) -> np.ndarray:
    state = rng.bit_generator.state
    mask = (1 << 64) - 1
    words = [state["state"]["state"] >> 64, state["state"]["state"] & mask, state["state"]["inc"] >> 64]
    words += [state["state"]["inc"] & mask, state["has_uint32"], state["uinteger"]]
    return np.array(words, dtype=np.uint64).view(np.int64)


def _set_rng_state(rng: np.random.Generator, words: np.ndarray) -> None:
    w = [int(v) for v in np.asarray(words, dtype=np.int64).view(np.uint64)]
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
        "has_uint32": w[4],
        "uinteger": w[5],
    }


@dataclass
class _State:
    centroids: np.ndarray
    counts: np.ndarray
    objective: list[float]
    splits: int
    rng: np.random.Generator


def _fingerprint(k: int, config: KMeansConfig, training: _TrainingSet) -> str:
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for name in ("niter", "tol", "engine", "checkpoint_every"):
        settings.pop(name)
    layout = hashlib.sha256(np.array(training.signature, dtype=np.int64).tobytes()).hexdigest()[:16]
    return json.dumps({"k": k, "dim": training.dim, "n_total": training.n_total, "shards": layout, **settings}, sort_keys=True)


def _save_checkpoint(path: Path, state: _State, fingerprint: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, overwrite=True) as file:
        np.savez(
            file,
            centroids=state.centroids,
            counts=state.counts,
            objective=np.array(state.objective, dtype=np.float64),
            iteration=np.int64(len(state.objective)),
            splits=np.int64(state.splits),
            rng_state=_rng_state(state.rng),
            fingerprint=np.array(fingerprint),
        )


def _load_checkpoint(path: Path, fingerprint: str, rng: np.random.Generator, k: int, dim: int) -> _State:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the checkpoint ({err})") from None
    expected = {"centroids", "counts", "objective", "iteration", "splits", "rng_state", "fingerprint"}
    if set(arrays) != expected:
        raise ValueError(f"{path}: not a k-means checkpoint (arrays {sorted(arrays)})")
    if str(arrays["fingerprint"]) != fingerprint:
        raise ValueError(
            f"{path}: the checkpoint belongs to another run (its settings {arrays['fingerprint']} differ from "
            f"{fingerprint}); remove it or give another checkpoint path"
        )
    if arrays["centroids"].shape != (k, dim) or len(arrays["objective"]) != int(arrays["iteration"]):
        raise ValueError(f"{path}: inconsistent checkpoint arrays")
    _set_rng_state(rng, arrays["rng_state"])
    return _State(
        np.ascontiguousarray(arrays["centroids"], dtype=np.float32),
        arrays["counts"].astype(np.int64),
        [float(v) for v in arrays["objective"]],
        int(arrays["splits"]),
        rng,
    )


def _broadcast_state(comm: Comm, state: _State | None, rng: np.random.Generator, k: int, dim: int) -> _State:
    if comm.world_size == 1:
        return state
    meta = np.zeros(2, dtype=np.int64) if state is None else np.array([len(state.objective), state.splits], dtype=np.int64)
    meta = comm.broadcast(meta)
    iterations, splits = int(meta[0]), int(meta[1])
    own = state is not None
    centroids = comm.broadcast(state.centroids if own else np.zeros((k, dim), dtype=np.float32))
    counts = comm.broadcast(state.counts if own else np.zeros(k, dtype=np.int64))
    objective = comm.broadcast(np.array(state.objective if own else np.zeros(iterations), dtype=np.float64))
    _set_rng_state(rng, comm.broadcast(_rng_state(state.rng if own else rng)))
    return _State(centroids, counts, [float(v) for v in objective], splits, rng)


def _initial_centroids(training: _TrainingSet, k: int, config: KMeansConfig, rng: np.random.Generator, device: torch.device) -> np.ndarray:
    if config.init == "random":
        return np.ascontiguousarray(training.gather(np.sort(rng.choice(training.n, size=k, replace=False))))
    m = min(training.n, max(k, config.init_points_per_centroid * k))
    sample = training.gather(np.sort(rng.choice(training.n, size=m, replace=False)))
    return kmeans_plusplus(sample, k, rng, device)


def _split_empty(centroids: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> int:
    """Refill empty clusters by splitting populated ones (in place); returns how many."""
    empty = np.flatnonzero(counts == 0)
    signs = np.where(np.arange(centroids.shape[1]) % 2 == 0, 1.0, -1.0)
    for i in empty:
        weights = np.maximum(counts - 1, 0).astype(np.float64)
        j = int(rng.choice(len(counts), p=weights / weights.sum()))
        c = centroids[j].astype(np.float64)
        scale = np.abs(c) + np.sqrt(np.mean(c * c))
        if not scale.any():
            scale[:] = 1.0
        delta = SPLIT_EPS * signs * scale
        centroids[i] = (c + delta).astype(np.float32)
        centroids[j] = (c - delta).astype(np.float32)
        counts[i] = counts[j] // 2
        counts[j] -= counts[i]
    return len(empty)


def _lloyd_step(
    training: _TrainingSet, chunks: range, engine: Engine, state: _State, exponent: int, comm: Comm
) -> tuple[float, int]:
    """One assignment and update (in place); returns the objective and the number of splits."""
    k, dim = state.centroids.shape
    engine.set_centroids(state.centroids)
    sums = torch.zeros((k, dim), dtype=torch.int64)
    counts = np.zeros(k, dtype=np.int64)
    objective = np.zeros(training.n_chunks, dtype=np.float64)
    scale = 2.0**exponent
    # x * 2**e is exact in float32 as in float64 while 2**e is a normal float32, so is its rounding
    scaled_dtype = torch.float32 if abs(exponent) < 100 else torch.float64
    for index in chunks:
        x = training.chunk(index)
        ids, dist = engine.search(x)
        objective[index] = dist.sum(dtype=np.float64)
        counts += np.bincount(ids, minlength=k)
        for start in range(0, len(x), _UPDATE_ROWS):
            block = torch.from_numpy(x[start : start + _UPDATE_ROWS]).to(scaled_dtype).mul(scale).round_().long()
            sums.index_add_(0, torch.from_numpy(ids[start : start + _UPDATE_ROWS]), block)
    sums_np = comm.allreduce_sum(sums.numpy())
    counts = comm.allreduce_sum(counts)
    objective = comm.allreduce_sum(objective)
    filled = counts > 0
    state.centroids[filled] = (sums_np[filled].astype(np.float64) / scale / counts[filled, None]).astype(np.float32)
    splits = _split_empty(state.centroids, counts, state.rng)
    state.counts = counts
    return float(objective.sum()), splits


def _converged(objective: list[float], tol: float) -> bool:
    """Whether the last iteration improved the objective by at most ``tol`` (relative; never for tol 0)."""
    return tol > 0 and len(objective) >= 2 and objective[-2] - objective[-1] <= tol * objective[-2]


def _config(config: KMeansConfig | None, overrides: dict[str, Any]) -> KMeansConfig:
    config = config or KMeansConfig()
    names = {f.name for f in dataclasses.fields(KMeansConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **overrides)


def fit(
    data: DataSpec,
    k: int,
    config: KMeansConfig | None = None,
    *,
    state_file: str | os.PathLike | None = None,
    progress: bool = True,
    distributed: bool | None = None,
    **options: Any,
) -> KMeansResult:
    """Train a k-means codebook of ``k`` centroids (see the module documentation).

    Args:
        data: ``[N, D]`` vectors: a ``.npy`` path, a directory of ``.npy`` shards, an array,
            a list of paths/arrays, or an iterator of arrays (a one-pass stream).
        k: number of centroids.
        config: settings; ``options`` (the field names of :class:`KMeansConfig`, e.g.
            ``niter=10, seed=1``) override single fields.
        state_file: ``.npz`` file to write after iterations and to resume from if present.
        progress: show a progress bar with the objective (rank 0 only).
        distributed: run over all ranks of ``torch.distributed`` (None: when initialised).

    Returns:
        :class:`KMeansResult`, identical on every rank.
    """
    config = _config(config, options)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    comm = get_comm(distributed)
    sample_seed, init_seed, split_seed = np.random.SeedSequence(config.seed).spawn(3)
    training = _training_set(open_dataset(data), k, config, np.random.default_rng(sample_seed), comm)
    engine = select_engine(config.engine, comm.local_rank)
    show = progress and comm.rank == 0
    message = f"k-means: k={k}, {training.n} training vectors of D={training.dim} (of {training.n_total}), engine {engine.description}"
    logger.info(message)
    if show:
        tqdm.write(message, file=sys.stderr)

    chunks = range(comm.rank, training.n_chunks, comm.world_size)
    max_abs = max((float(max(c.max(), -c.min())) for c in map(training.chunk, chunks)), default=0.0)
    exponent = _fixed_point_exponent(comm.allreduce_max(max_abs), training.n)

    fingerprint = _fingerprint(k, config, training)
    path = Path(state_file) if state_file is not None else None
    split_rng = np.random.default_rng(split_seed)
    state = None
    if comm.rank == 0:
        if path is not None and path.exists():
            state = _load_checkpoint(path, fingerprint, split_rng, k, training.dim)
        else:
            centroids = _initial_centroids(training, k, config, np.random.default_rng(init_seed), engine.torch_device)
            state = _State(centroids, np.zeros(k, dtype=np.int64), [], 0, split_rng)
    state = _broadcast_state(comm, state, split_rng, k, training.dim)
    resumed = len(state.objective)
    seconds = [0.0] * resumed

    bar = tqdm(total=config.niter, initial=min(resumed, config.niter), desc=f"k-means k={k}", disable=not show, file=sys.stderr)
    done = len(state.objective) >= config.niter or _converged(state.objective, config.tol)
    while not done:
        start = time.perf_counter()
        objective, splits = _lloyd_step(training, chunks, engine, state, exponent, comm)
        seconds.append(time.perf_counter() - start)
        state.objective.append(objective)
        state.splits += splits
        done = len(state.objective) >= config.niter or _converged(state.objective, config.tol)
        if comm.rank == 0 and path is not None and (len(state.objective) % config.checkpoint_every == 0 or done):
            _save_checkpoint(path, state, fingerprint)
        bar.set_postfix(objective=f"{objective:.6g}", split=splits)
        bar.update(1)
        logger.info("iteration %d: objective %.9g, %d empty clusters split", len(state.objective), objective, splits)
    bar.close()
    return KMeansResult(
        centroids=state.centroids,
        counts=state.counts,
        objective=np.array(state.objective, dtype=np.float64),
        iteration_seconds=np.array(seconds, dtype=np.float64),
        n_train=training.n,
        n_total=training.n_total,
        engine=engine.description,
        resumed_from=resumed,
        splits=state.splits,
    )


def train(data: DataSpec, k: int, config: KMeansConfig | None = None, *, checkpoint: str | os.PathLike | None = None, **kwargs: Any) -> KMeansResult:
    """Deprecated spelling of :func:`fit` (``checkpoint`` is now ``state_file``); removed in the next release."""
    warnings.warn("kmeans.train is deprecated, use kmeans.fit (checkpoint= is now state_file=)", DeprecationWarning, stacklevel=2)
    return fit(data, k, config, state_file=checkpoint, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":
        warnings.warn("kmeans.TrainConfig is deprecated, use kmeans.KMeansConfig", DeprecationWarning, stacklevel=2)
        return KMeansConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
