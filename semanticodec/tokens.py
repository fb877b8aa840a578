"""Token sequence formats for language models, and conversions between them.

The codec produces token *pairs* ``[T, 2]`` (column 0 semantic id in [0, V), column 1
acoustic id in [0, A), A = 8192). Row t is one position; at 100 tok/s 8 consecutive rows
are the 8 frequency bands of one 0.16 s AudioMAE patch column (not 8 time steps); at
50 tok/s 4 rows make a 0.16 s column, at 25 tok/s 4 rows span 0.32 s. Language models
usually want one stream of ids, so three formats are defined:

``pairs``     ``[T, 2]`` the official layout; no special tokens.
``flat``      ``[2T]`` one stream over a single vocabulary of V + A + 3 ids, interleaved per
              position: ``s0, V+a0, s1, V+a1, ...`` (acoustic ids offset by V);
              BOS = V + A, EOS = V + A + 1, PAD = V + A + 2.
``semantic``  ``[T]`` semantic ids only; BOS = V, EOS = V + 1, PAD = V + 2 (the decoder
              needs acoustic ids too: :func:`merge` pairs semantic ids with acoustic ones).

Every function accepts numpy arrays or torch tensors and returns the same kind (int64),
with an optional leading batch dimension. torch is not imported here (a tensor argument means
it already is), so that reading token files (:func:`load_token_file`) stays light.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, TypeGuard

import numpy as np

from semanticodec.constants import ACOUSTIC_VOCAB_SIZE, PAIRS_PER_COLUMN, stack_factor
from semanticodec.deprecation import renamed_attribute, renamed_keywords

if TYPE_CHECKING:
    from torch import Tensor

    Array: TypeAlias = np.ndarray | Tensor

Format = Literal["pairs", "flat", "semantic"]
_RENAMED = {"semantic_vocab": "semantic_vocab_size", "acoustic_vocab": "acoustic_vocab_size"}
"""Keyword spellings of the previous release (DeprecationWarning, removed in the next one)."""
FORMATS: tuple[str, ...] = ("pairs", "flat", "semantic")



@dataclass(frozen=True)
class TokenFormat:
    """Ids of one LM format for semantic vocabulary ``semantic_vocab_size`` (V) and acoustic
    vocabulary ``acoustic_vocab_size`` (A).

    ``flat``: ids [0, V) semantic, [V, V + A) acoustic, then BOS, EOS, PAD.
    ``semantic``: ids [0, V) semantic, then BOS, EOS, PAD. ``pairs`` has no special ids.
    """

    kind: Format = "flat"
    semantic_vocab_size: int = 16384
    acoustic_vocab_size: int = ACOUSTIC_VOCAB_SIZE

    def __post_init__(self) -> None:
        if self.kind not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.kind!r}")
        for name in ("semantic_vocab_size", "acoustic_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")

    @property
    def base(self) -> int:
        """Number of ordinary (non-special) ids: V + A for ``flat``, V for ``semantic``."""
        if self.kind == "pairs":
            raise ValueError("the pairs format has no single vocabulary and no special tokens")
        return self.semantic_vocab_size + (self.acoustic_vocab_size if self.kind == "flat" else 0)

    @property
    def bos(self) -> int:
        """Begin-of-file id."""
        return self.base

    @property
    def eos(self) -> int:
        """End-of-file id."""
        return self.base + 1

    @property
    def pad(self) -> int:
        """Padding id."""
        return self.base + 2

    @property
    def vocab_size(self) -> int:
        """Size of the LM vocabulary including the three special ids."""
        return self.base + 3

    @property
    def ids_per_row(self) -> int:
        """Sequence ids per token pair: 2 for ``flat``, 1 for ``semantic``."""
        return {"pairs": 2, "flat": 2, "semantic": 1}[self.kind]

    semantic_vocab = renamed_attribute("TokenFormat", "semantic_vocab", "semantic_vocab_size")
    acoustic_vocab = renamed_attribute("TokenFormat", "acoustic_vocab", "acoustic_vocab_size")

    def encode(self, pairs: Array, bos: bool = False, eos: bool = False) -> Array:
        """Pairs ``[T, 2]`` or ``[B, T, 2]`` → this format (``[L]`` or ``[B, L]``; pairs: a copy)."""
        if self.kind == "flat":
            return flatten(pairs, self.semantic_vocab_size, self.acoustic_vocab_size, bos, eos)
        if self.kind == "semantic":
            return semantic_only(pairs, self.semantic_vocab_size, self.acoustic_vocab_size, bos, eos)
        if bos or eos:
            raise ValueError("the pairs format has no BOS/EOS tokens")
        return _wrap(check_pairs(pairs, self.semantic_vocab_size, self.acoustic_vocab_size).copy(), pairs)

    def decode(self, sequence: Array) -> Array:
        """This format → pairs ``[T, 2]`` (``flat``, ``pairs``) or semantic ids ``[T]``
        (``semantic``); special tokens are removed (a single sequence only)."""
        if self.kind == "flat":
            return unflatten(sequence, self.semantic_vocab_size, self.acoustic_vocab_size)
        if self.kind == "semantic":
            return strip_semantic(sequence, self.semantic_vocab_size)
        return _wrap(check_pairs(sequence, self.semantic_vocab_size, self.acoustic_vocab_size).copy(), sequence)



TokenFormat.__init__ = renamed_keywords("TokenFormat", **_RENAMED)(TokenFormat.__init__)  # type: ignore[method-assign]

def _is_tensor(x: object) -> TypeGuard[Tensor]:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _numpy(x: Array, name: str) -> np.ndarray:
    array = x.detach().cpu().numpy() if _is_tensor(x) else np.asarray(x)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _wrap(result: np.ndarray, like: Array) -> Array:
    if not _is_tensor(like):
        return result
    import torch

    return torch.from_numpy(np.ascontiguousarray(result))


def _check_range(ids: np.ndarray, low: int, high: int, what: str) -> None:
    if ids.size and (ids.min() < low or ids.max() >= high):
        raise ValueError(f"{what} ids must lie in [{low}, {high}), got min {ids.min()} max {ids.max()}")


@renamed_keywords("check_pairs", **_RENAMED)
def check_pairs(pairs: Array, semantic_vocab_size: int, acoustic_vocab_size: int = ACOUSTIC_VOCAB_SIZE) -> np.ndarray:
    """Validate pairs ``[T, 2]`` or ``[B, T, 2]`` and return them as int64 numpy."""
    array = _numpy(pairs, "pairs")
    if array.ndim not in (2, 3) or array.shape[-1] != 2:
        raise ValueError(f"pairs must have shape [T, 2] or [B, T, 2], got {list(array.shape)}")
    _check_range(array[..., 0], 0, semantic_vocab_size, "semantic")
    _check_range(array[..., 1], 0, acoustic_vocab_size, "acoustic")
    return array


def _add_specials(seq: np.ndarray, bos_id: int, bos: bool, eos: bool) -> np.ndarray:
    parts = []
    lead = seq.shape[:-1]
    if bos:
        parts.append(np.full((*lead, 1), bos_id, np.int64))
    parts.append(seq)
    if eos:
        parts.append(np.full((*lead, 1), bos_id + 1, np.int64))
    return np.concatenate(parts, axis=-1)


@renamed_keywords("flatten", **_RENAMED)
def flatten(
    pairs: Array, semantic_vocab_size: int, acoustic_vocab_size: int = ACOUSTIC_VOCAB_SIZE, bos: bool = False, eos: bool = False
) -> Array:
    """Pairs ``[T, 2]`` / ``[B, T, 2]`` → flat stream ``[2T]`` / ``[B, 2T]`` (+1 with BOS, +1 with EOS).

    Position t becomes ``s_t, V + a_t``; BOS = V + A and EOS = V + A + 1.
    """
    array = check_pairs(pairs, semantic_vocab_size, acoustic_vocab_size)
    flat = (array + np.array([0, semantic_vocab_size], np.int64)).reshape(*array.shape[:-2], -1)
    return _wrap(_add_specials(flat, semantic_vocab_size + acoustic_vocab_size, bos, eos), pairs)


def _strip(seq: np.ndarray, base: int, what: str) -> np.ndarray:
    """Remove BOS (leading), EOS and PAD (trailing) ids ≥ ``base`` from a 1-D sequence."""
    if seq.ndim != 1:
        raise ValueError(f"{what} sequence must be 1-D, got shape {list(seq.shape)}")
    bos, eos, pad = base, base + 1, base + 2
    _check_range(seq, 0, base + 3, what)
    start = 1 if seq.size and seq[0] == bos else 0
    stop = seq.size
    while stop > start and seq[stop - 1] == pad:
        stop -= 1
    if stop > start and seq[stop - 1] == eos:
        stop -= 1
    body = seq[start:stop]
    special = np.flatnonzero(body >= base)
    if special.size:
        position = int(special[0]) + start
        raise ValueError(
            f"{what} sequence has special id {int(seq[position])} at position {position}: BOS may only "
            "come first, EOS and PAD only at the end"
        )
    return body


@renamed_keywords("unflatten", **_RENAMED)
def unflatten(sequence: Array, semantic_vocab_size: int, acoustic_vocab_size: int = ACOUSTIC_VOCAB_SIZE) -> Array:
    """Flat stream ``[L]`` (optionally with BOS, EOS, trailing PAD) → pairs ``[T, 2]``.

    Raises ValueError when the ids do not alternate semantic [0, V) / acoustic [V, V + A).
    """
    body = _strip(_numpy(sequence, "flat sequence"), semantic_vocab_size + acoustic_vocab_size, "flat")
    if body.size % 2:
        raise ValueError(f"flat sequence holds {body.size} ids without specials; a whole number of pairs needs an even count")
    pairs = body.reshape(-1, 2) - np.array([0, semantic_vocab_size], np.int64)
    wrong = np.flatnonzero((pairs[:, 0] >= semantic_vocab_size) | (pairs[:, 1] < 0))
    if wrong.size:
        row = int(wrong[0])
        raise ValueError(
            f"flat sequence is not interleaved at pair {row}: expected a semantic id < {semantic_vocab_size} "
            f"then an acoustic id in [{semantic_vocab_size}, {semantic_vocab_size + acoustic_vocab_size}), "
            f"got {int(body[2 * row])}, {int(body[2 * row + 1])}"
        )
    return _wrap(pairs, sequence)


@renamed_keywords("semantic_only", **_RENAMED)
def semantic_only(
    pairs: Array, semantic_vocab_size: int, acoustic_vocab_size: int = ACOUSTIC_VOCAB_SIZE, bos: bool = False, eos: bool = False
) -> Array:
    """Pairs ``[T, 2]`` / ``[B, T, 2]`` → semantic ids ``[T]`` / ``[B, T]`` (BOS = V, EOS = V + 1)."""
    array = check_pairs(pairs, semantic_vocab_size, acoustic_vocab_size)
    return _wrap(_add_specials(array[..., 0], semantic_vocab_size, bos, eos), pairs)


@renamed_keywords("strip_semantic", **_RENAMED)
def strip_semantic(sequence: Array, semantic_vocab_size: int) -> Array:
    """Semantic-only sequence ``[L]`` (optionally with BOS, EOS, trailing PAD) → semantic ids ``[T]``."""
    return _wrap(_strip(_numpy(sequence, "semantic sequence"), semantic_vocab_size, "semantic").copy(), sequence)


def merge(semantic: Array, acoustic: Array) -> Array:
    """Semantic ids ``[T]`` and acoustic ids ``[T]`` (or ``[B, T]`` each) → pairs ``[T, 2]``."""
    s, a = _numpy(semantic, "semantic ids"), _numpy(acoustic, "acoustic ids")
    if s.shape != a.shape or s.ndim not in (1, 2):
        raise ValueError(f"semantic and acoustic ids must have the same shape [T] or [B, T], got {list(s.shape)} and {list(a.shape)}")
    return _wrap(np.stack([s, a], axis=-1), semantic)


def convert(
    sequence: Array,
    source: Format,
    target: Format,
    semantic_vocab_size: int,
    acoustic_vocab_size: int = ACOUSTIC_VOCAB_SIZE,
    bos: bool = False,
    eos: bool = False,
) -> Array:
    """Convert one sequence between formats (through pairs). ``semantic`` → another format is
    impossible (the acoustic ids are missing; use :func:`merge`)."""
    src = TokenFormat(source, semantic_vocab_size, acoustic_vocab_size)
    dst = TokenFormat(target, semantic_vocab_size, acoustic_vocab_size)
    if source == "semantic" and target != "semantic":
        raise ValueError("semantic-only tokens cannot be converted to pairs: the acoustic ids are missing (use merge)")
    decoded = src.decode(sequence)
    if source == "semantic":
        return _wrap(_add_specials(_numpy(decoded, "semantic ids"), semantic_vocab_size, bos, eos), sequence)
    return dst.encode(decoded, bos, eos)


def rows_per_column(token_rate: int) -> int:
    """Token rows (pairs) per token column at ``token_rate`` tok/s (8, 4, 4)."""
    stack_factor(token_rate)  # checks the rate
    return PAIRS_PER_COLUMN[token_rate]


def pad_batch(sequences: list[Array], pad_id: int, length: int | None = None) -> tuple[Tensor, Tensor]:
    """Right-pad 1-D sequences to one length: (ids ``[B, L]`` int64, lengths ``[B]`` int64).

    ``length`` defaults to the longest sequence; longer sequences raise ValueError.
    """
    import torch

    if not sequences:
        raise ValueError("no sequences to pad")
    arrays = [_numpy(s, f"sequence {i}") for i, s in enumerate(sequences)]
    for i, a in enumerate(arrays):
        if a.ndim != 1:
            raise ValueError(f"sequence {i} must be 1-D, got shape {list(a.shape)}")
    longest = max(a.size for a in arrays)
    size = longest if length is None else int(length)
    if size < longest:
        raise ValueError(f"a sequence of {longest} ids is longer than length {size}")
    out = np.full((len(arrays), size), pad_id, np.int64)
    for row, a in zip(out, arrays):
        row[: a.size] = a
    return torch.from_numpy(out), torch.tensor([a.size for a in arrays], dtype=torch.int64)


def load_token_file(
    path: str | os.PathLike,
    fmt: Literal["auto", "pairs", "flat"] = "pairs",
    semantic_vocab_size: int | None = None,
    acoustic_vocab_size: int = ACOUSTIC_VOCAB_SIZE,
) -> np.ndarray:
    """Token pairs int64 ``[T, 2]`` of a ``.npy`` file.

    ``fmt``: ``pairs`` (an integer array ``[T, 2]`` or ``[1, T, 2]``), ``flat`` (``[L]``, the
    :func:`flatten` stream, special ids allowed; needs ``semantic_vocab_size``) or ``auto``
    (by the array's rank). With ``semantic_vocab_size`` the ids are checked against the
    vocabularies. The .npy header is checked against the file size before anything is
    allocated, and no pickles are loaded; every problem is a ValueError naming the file.
    """
    with open(path, "rb") as file:
        try:
            major, _ = np.lib.format.read_magic(file)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(file)
        except (ValueError, EOFError) as error:
            raise ValueError(f"{path} is not a readable .npy file ({error})") from None
        if dtype.kind not in "iu":
            raise ValueError(f"{path}: tokens must be integers, got dtype {dtype}")
        if fmt == "auto":
            fmt = "flat" if len(shape) == 1 else "pairs"
        if fmt == "pairs" and not ((len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)) and shape[-1] == 2):
            raise ValueError(f"{path}: tokens must have shape [T, 2] or [1, T, 2], got {list(shape)}")
        if fmt == "flat" and len(shape) != 1:
            raise ValueError(f"{path}: a flat token stream must have shape [L], got {list(shape)}")
        needed = math.prod(shape) * dtype.itemsize  # Python ints: a claimed size cannot wrap around
        available = Path(path).stat().st_size - file.tell()
        if available < needed:
            raise ValueError(f"{path} is truncated: {needed} bytes of data expected, {available} present")
        file.seek(0)
        array = np.load(file, allow_pickle=False)
    if semantic_vocab_size is None:
        if fmt == "flat":
            raise ValueError(f"{path}: reading a flat token stream needs the semantic vocabulary size")
        return array.reshape(-1, 2).astype(np.int64)
    try:
        return np.asarray(TokenFormat(fmt, semantic_vocab_size, acoustic_vocab_size).decode(array.reshape(-1, 2) if fmt == "pairs" else array))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
