"""Entropy tables of the models: where they are stored, how they are found, how they are learned.

The tables (``semanticodec.bitstream.EntropyTables``) are the arrays of ``EntropyTables.to_arrays`` (keys
``entropy.*``) in a safetensors file: inside the bundled default model's weights file, or in
a small file of their own (official models, or any model whose weights file should stay
untouched). ``semanticodec learn-tables`` counts them from token datasets and stores them.

Lookup, by model id when writing and by table id when reading, in this order:

1. the bundled default model's file;
2. every file named by ``$SEMANTICODEC_TABLES`` (paths separated by ``os.pathsep``; a folder
   stands for the ``*.safetensors`` files in it).

A model without tables (the official models, unless their tables are installed this way) is
coded at fixed width, i.e. under a uniform distribution: its streams are format version 1,
which every reader decodes. A stream whose tables are not found cannot be decoded.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from semanticodec.bitstream import EntropyTables
from semanticodec.bitstream.tables import CONTEXTS, TABLE_PREFIX
from semanticodec.released import DEFAULT_MODEL

TABLES_ENV = "SEMANTICODEC_TABLES"
TABLES_FORMAT = "semanticodec-entropy-tables"
"""``format`` metadata of a tables file of its own."""


def read_tables(path: str | os.PathLike) -> EntropyTables | None:
    """The entropy tables stored in a safetensors file, None when it holds none.

    Raises ValueError when the file is unreadable or its tables are malformed.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as file:
            keys = [key for key in file.keys() if key.startswith(TABLE_PREFIX)]
            arrays = {key: file.get_tensor(key) for key in keys}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({error})") from None
    if not arrays:
        return None
    try:
        return EntropyTables.from_arrays(arrays, source=str(path))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


@functools.lru_cache(maxsize=16)
def _cached_tables(path: str, mtime_ns: int, size: int) -> EntropyTables | None:
    return read_tables(path)


def table_files() -> list[Path]:
    """The files searched for tables, in order: the bundled model, then ``$SEMANTICODEC_TABLES``."""
    files = [DEFAULT_MODEL] if DEFAULT_MODEL.is_file() else []
    for entry in filter(None, os.environ.get(TABLES_ENV, "").split(os.pathsep)):
        path = Path(entry)
        files += sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    return files


def available_tables() -> list[EntropyTables]:
    """Every table found in ``table_files()`` (a file named in ``$SEMANTICODEC_TABLES`` that is
    missing or malformed raises ValueError)."""
    found = []
    for path in table_files():
        try:
            stat = path.stat()
        except OSError as error:
            raise ValueError(f"${TABLES_ENV}: {path}: {error.strerror}") from None
        tables = _cached_tables(str(path), stat.st_mtime_ns, stat.st_size)
        if tables is not None:
            found.append(tables)
    return found


def tables_for_model(model_id: bytes, token_rate: int, semantic_vocab_size: int, acoustic_vocab_size: int) -> EntropyTables | None:
    """The first tables found for this model, rate and vocabularies, or None (fixed width)."""
    for tables in available_tables():
        if tables.model_id == model_id and tables.fits(token_rate, semantic_vocab_size, acoustic_vocab_size):
            return tables
    return None


def find_tables(table_id: bytes) -> EntropyTables | None:
    """The tables named ``table_id`` (a stream header's), or None when none is installed.
    Pass it as ``tables=`` to the ``bitstream`` readers."""
    for tables in available_tables():
        if tables.table_id == table_id:
            return tables
    return None


def learn_from_datasets(roots: Sequence[str | os.PathLike], contexts: Sequence[str] = CONTEXTS) -> tuple[EntropyTables, float]:
    """Tables learned from token datasets (``semanticodec tokenize`` folders of one model):
    ``(tables, hours of audio)``. ValueError when the datasets disagree on the model."""
    from semanticodec.bitstream.learn import learn_tables  # numba: only when learning
    from semanticodec.dataset import TokenDataset

    files, seconds, meta = [], 0.0, None
    if not roots:
        raise ValueError("no token datasets to learn entropy tables from")
    for root in roots:
        data = TokenDataset(root)
        key = {k: data.meta[k] for k in ("token_rate", "semantic_vocab_size", "acoustic_vocab_size", "model_id")}
        if meta is not None and key != meta:
            raise ValueError(f"{root} holds tokens of {key}, the first dataset {meta}: learn from one model's tokens")
        meta = key
        files += [data.tokens(i) for i in range(len(data))]
        seconds += sum(entry["duration"] for entry in data.entries)
    assert meta is not None  # set by the first of the roots
    tables = learn_tables(
        files, meta["token_rate"], meta["semantic_vocab_size"], meta["acoustic_vocab_size"], bytes.fromhex(meta["model_id"]), contexts,
    )
    return tables, seconds / 3600


def store_tables(tables: EntropyTables, path: str | os.PathLike, into_model: bool, overwrite: bool = False) -> None:
    """Write ``tables`` to a safetensors file atomically.

    ``into_model``: ``path`` is a semanticodec weights file of the tables' model; its tensors
    and metadata are kept bit for bit and its ``entropy.*`` arrays replaced. Otherwise
    ``path`` becomes a tables file of its own (replacing an existing one only with ``overwrite``).
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    from semanticodec.atomic import atomic_write, check_output
    from semanticodec.weights import file_config

    arrays = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in tables.to_arrays().items()}
    if into_model:
        config = file_config(Path(path))
        if config.model_id != tables.model_id:
            raise ValueError(
                f"{path} holds model {config.model_id.hex()} ({config.name}); the tables are for model {tables.model_id.hex()}"
            )
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
        state = {key: value for key, value in load_file(str(path)).items() if not key.startswith(TABLE_PREFIX)}
        state.update(arrays)
        overwrite = True
    else:
        check_output(path, overwrite=overwrite)
        metadata = {"format": TABLES_FORMAT, "table_id": tables.table_id.hex(), "model_id": tables.model_id.hex()}
        state = arrays
    data = save(state, metadata=metadata)
    with atomic_write(path, overwrite=overwrite) as file:
        file.write(data)


def describe(tables: EntropyTables) -> str:
    """One line naming tables: id, contexts, entries and where they were found."""
    entries = sum(c.symbols.size for layer in (tables.semantic, tables.acoustic) for c in layer.contexts)
    where = f" ({tables.source})" if tables.source else ""
    return f"{tables.table_id.hex()}{where}: contexts {', '.join(tables.contexts)}; {entries} context entries"

