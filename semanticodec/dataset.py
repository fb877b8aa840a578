"""Reading token datasets (written by :mod:`semanticodec.corpus`) in training loops.

No model is needed: shards are memory-mapped ``.npy`` files and the index is JSON lines.

- :class:`TokenDataset` (map-style): item i is file i of the index, whole or as a random
  crop of a fixed number of token rows starting on a patch-column boundary (8 rows at
  100 tok/s, 4 at 50 and 25), in any LM format (``pairs``, ``flat``, ``semantic``).
- :class:`TokenStream` (iterable): files in shuffled order, each as
  ``BOS ids... EOS`` in the ``flat`` or ``semantic`` format, packed into fixed-length
  sequences; split across DataLoader workers and distributed ranks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from semanticodec.tokens import Format, TokenFormat, pad_batch, rows_per_column

FORMAT_NAME = "semanticodec-tokens"
FORMAT_VERSION = 1


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    """``meta.json`` of a dataset folder; ValueError when it is missing or not a token dataset."""
    path = Path(root) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{root} is not a token dataset (no meta.json)") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a {FORMAT_NAME} version {FORMAT_VERSION} dataset")
    for old, new in _OLD_META_KEYS.items():  # datasets written before the keys were renamed
        if new not in meta and old in meta:
            meta[new] = meta.pop(old)
    _check_fields(meta, _META_FIELDS, str(path))
    if len(meta["model_id"]) != 32 or any(c not in "0123456789abcdefABCDEF" for c in meta["model_id"]):
        raise ValueError(f"{path}: model_id must be 32 hexadecimal digits")
    return meta


_META_FIELDS = {"token_rate": int, "semantic_vocab_size": int, "acoustic_vocab_size": int, "model_id": str}
_OLD_META_KEYS = {"semantic_vocab": "semantic_vocab_size", "acoustic_vocab": "acoustic_vocab_size"}
"""Keys of ``meta.json`` files of the previous release, still read (written under the new names)."""
_INDEX_FIELDS = {"file": str, "shard": str, "offset": int, "length": int, "sample_count": int, "sample_rate": int}


def upgrade_index_entry(entry: Any) -> Any:
    """An index line of the previous release (``num_samples``) under this release's key
    (``sample_count``); other values are returned as they are."""
    if isinstance(entry, dict) and "sample_count" not in entry and "num_samples" in entry:
        entry["sample_count"] = entry.pop("num_samples")
    return entry


def _check_fields(record: Any, fields: dict[str, type], where: str) -> None:
    """ValueError unless ``record`` is a JSON object with these keys of these types (ints >= 0)."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: not a JSON object")
    for key, kind in fields.items():
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, int) and value < 0):
            expected = "a non-negative integer" if kind is int else "a string"
            raise ValueError(f"{where}: {key!r} must be {expected}, got {value!r}"[:200])


def read_index(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Entries of ``index.jsonl`` (file, shard, offset, length, duration, sample_count, sample_rate)."""
    path = Path(root) / "index.jsonl"
    if not path.exists():
        raise ValueError(f"{root} has no index.jsonl: the tokenize run did not finish (run it again to resume)")
    entries = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if line.strip():
                try:
                    entry = upgrade_index_entry(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path} line {number}: not JSON ({error})") from None
                _check_fields(entry, _INDEX_FIELDS, f"{path} line {number}")
                if Path(entry["shard"]).name != entry["shard"] or entry["sample_rate"] == 0:
                    raise ValueError(f"{path} line {number}: shard must be a file name of the dataset, sample_rate positive")
                entries.append(entry)
    return entries


class _Shards:
    """Memory-mapped shards of one dataset, opened on first use (per process)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.open: dict[str, np.ndarray] = {}

    def rows(self, entry: dict[str, Any], start: int = 0, stop: int | None = None) -> np.ndarray:
        """Token pairs int64 ``[stop - start, 2]`` of one index entry (rows relative to the file)."""
        name = entry["shard"]
        if name not in self.open:
            self.open[name] = np.load(self.root / name, mmap_mode="r", allow_pickle=False)
        stop = entry["length"] if stop is None else stop
        offset = entry["offset"]
        return np.asarray(self.open[name][offset + start : offset + stop], dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "open": {}}


class TokenDataset(Dataset):
    """Map-style dataset over a token dataset folder.

    Args:
        root: the dataset folder.
        format: ``pairs`` (items int64 ``[T, 2]``), ``flat`` (``[2T]``) or ``semantic`` (``[T]``).
        crop: token rows per item; each item is a random crop of ``crop`` rows starting on a
            column boundary (``crop`` must be a multiple of the rows per column). Files
            shorter than ``crop`` are left out. None: whole files.
        bos, eos: add begin/end-of-file ids (``flat`` and ``semantic`` only; with ``crop``,
            only when the crop starts at the file's start / ends at its end).
        seed: crops are drawn from (seed, epoch, index), so they are reproducible and
            independent of DataLoader workers; call :meth:`set_epoch` for new crops.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        format: Format = "pairs",
        crop: int | None = None,
        bos: bool = False,
        eos: bool = False,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.meta = read_meta(root)
        self.format = TokenFormat(format, self.meta["semantic_vocab_size"], self.meta["acoustic_vocab_size"])
        if format == "pairs" and (bos or eos):
            raise ValueError("the pairs format has no BOS/EOS tokens")
        self.token_rate = int(self.meta["token_rate"])
        self.rows_per_column = rows_per_column(self.token_rate)
        if crop is not None and (crop < 1 or crop % self.rows_per_column):
            raise ValueError(
                f"crop must be a positive multiple of {self.rows_per_column} rows (one column at "
                f"{self.token_rate} tok/s), got {crop}"
            )
        self.crop = crop
        self.bos, self.eos = bos, eos
        self.seed = int(seed)
        self.epoch = 0
        entries = read_index(root)
        self.entries = [e for e in entries if crop is None or e["length"] >= crop]
        self._by_name = {e["file"]: i for i, e in enumerate(self.entries)}
        self._shards = _Shards(self.root)

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of another epoch."""
        self.epoch = int(epoch)

    def index_of(self, name: str) -> int:
        """Item index of a file name as written in the index."""
        if name not in self._by_name:
            raise ValueError(f"{name} is not in {self.root}")
        return self._by_name[name]

    def tokens(self, index: int) -> np.ndarray:
        """All token pairs int64 ``[T, 2]`` of file ``index`` (no crop, no format)."""
        return self._shards.rows(self.entries[self._check(index)])

    def crop_start(self, index: int) -> int:
        """First row of item ``index``'s crop in this epoch (0 without ``crop``)."""
        index = self._check(index)
        if self.crop is None:
            return 0
        columns = (self.entries[index]["length"] - self.crop) // self.rows_per_column + 1
        rng = np.random.default_rng((self.seed, self.epoch, index))
        return int(rng.integers(columns)) * self.rows_per_column

    def _check(self, index: int) -> int:
        """``index`` in [0, len) (negative counts from the end); IndexError when out of range."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return index % len(self)

    def __getitem__(self, index: int) -> Tensor:
        index = self._check(index)
        entry = self.entries[index]
        start = self.crop_start(index)
        stop = entry["length"] if self.crop is None else start + self.crop
        pairs = self._shards.rows(entry, start, stop)
        if self.format.kind == "pairs":
            return torch.from_numpy(pairs)
        bos = self.bos and start == 0
        eos = self.eos and stop == entry["length"]
        return torch.from_numpy(self.format.encode(pairs, bos=bos, eos=eos))

    def collate(self, items: list[Tensor]) -> tuple[Tensor, Tensor]:
        """DataLoader ``collate_fn`` for ``flat``/``semantic`` items: (ids ``[B, L]`` padded with
        PAD, lengths ``[B]``)."""
        return pad_batch(items, self.format.pad)


class TokenStream(IterableDataset):
    """Iterable dataset of fixed-length LM sequences ``[seq_len]`` int64.

    Files (in an order shuffled per epoch with ``shuffle``) become ``BOS ids... EOS`` in the
    ``flat`` or ``semantic`` format and are concatenated; the stream is cut into sequences of
    ``seq_len`` ids (a final partial sequence is dropped). Files are split round-robin over
    distributed ranks (``rank``/``world_size``, default from torch.distributed) and then over
    DataLoader workers, so every file is read by exactly one worker per epoch.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        seq_len: int,
        format: Format = "flat",
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if format == "pairs":
            raise ValueError("TokenStream packs one id stream: use format 'flat' or 'semantic'")
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.dataset = TokenDataset(root, format, bos=True, eos=True)
        self.seq_len = int(seq_len)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0
        if rank is None or world_size is None:
            dist = torch.distributed
            initialised = dist.is_available() and dist.is_initialized()
            rank = dist.get_rank() if initialised else 0
            world_size = dist.get_world_size() if initialised else 1
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        """Use the file order of another epoch."""
        self.epoch = int(epoch)

    def files(self) -> list[int]:
        """Item indices this rank and DataLoader worker read in this epoch, in order."""
        order = np.arange(len(self.dataset))
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(order)
        worker = get_worker_info()
        workers, worker_id = (1, 0) if worker is None else (worker.num_workers, worker.id)
        return [int(i) for i in order[self.rank :: self.world_size][worker_id::workers]]

    def __iter__(self) -> Iterator[Tensor]:
        buffer = np.zeros(0, np.int64)
        for index in self.files():
            buffer = np.concatenate([buffer, self.dataset[index].numpy()])
            while buffer.size >= self.seq_len:
                yield torch.from_numpy(buffer[: self.seq_len].copy())
                buffer = buffer[self.seq_len :]
