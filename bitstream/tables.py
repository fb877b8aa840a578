"""Entropy tables: the static statistics that drive the range coder of :mod:`.entropy`.

One ``EntropyTables`` belongs to one model (token rate, vocabularies, model id) and holds, for
each layer (``semantic``, ``acoustic``):

- ``base``: counts of every id per frequency band (the 8 or 4 pairs of a token column; one
  row when the band context is off), with its weight W0;
- sparse context counts: for each context id, the ids that followed it and how often
  (``previous_column``: the same band's id one column earlier; ``previous_band``: the id of
  the band below in the same column; ``semantic``, acoustic layer only: the pair's semantic
  id), each with a full weight W and a half count H;
- ``local``: the weight and half count of the counts adapted within a packet.

:func:`~semanticodec.bitstream.learn.learn_tables` counts them from token arrays and fits the
weights to held-back files; ``to_arrays`` / ``from_arrays`` give the named arrays stored in a safetensors file (keys
``entropy.*``), and ``table_id``, the first 8 bytes of their SHA-256, names the tables in a
stream header (FORMAT.md §8), so a stream never decodes with other tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from semanticodec.bitstream.header import MAX_VOCAB, MIN_VOCAB, PAIRS_PER_COLUMN, TABLE_ID_BYTES, TOKEN_RATES
from semanticodec.deprecation import renamed_attribute, renamed_keywords

TABLE_PREFIX = "entropy."
"""Key prefix of the table arrays in a safetensors file."""
TABLE_FORMAT = 1
"""Layout version of the stored arrays (``entropy.info[0]``)."""
LAYERS = ("semantic", "acoustic")
LAYER_CONTEXTS = {"semantic": ("previous_column", "previous_band"), "acoustic": ("previous_column", "semantic", "previous_band")}
"""The sparse contexts of each layer, in the order the coder sums them."""
CONTEXTS = ("band", "previous_column", "previous_band", "semantic", "local")
"""Every context the model can use (``learn_tables(contexts=...)`` switches them)."""
MAX_TOTAL = 1 << 24
"""Largest total frequency the model may produce (the range coder's range // total keeps >= 16 bits)."""
PREVIOUS_COLUMN = 0
"""Context kind: the id of the same stream one token column earlier, same band."""
PREVIOUS_BAND = 1
"""Context kind: the id of the same stream in the band below, same column."""
SEMANTIC = 2
"""Context kind (acoustic layer only): the semantic id of the same pair."""
KIND_CODES = {"previous_column": PREVIOUS_COLUMN, "previous_band": PREVIOUS_BAND, "semantic": SEMANTIC}
MAX_COUNT = 0xFFFF
"""Largest sparse-context count (they are stored as uint16; ``learn_tables`` scales down a
context whose counts exceed it), which keeps every product of the coder within 64 bits."""


@dataclass(frozen=True, eq=False)
class SparseContext:
    """Counts of the ids that follow each context id.

    kind: ``previous_column``, ``previous_band`` or ``semantic``. weight, half: the weight
    W * N // (N + half) it earns with N observations. offsets [C + 1]: the entries of context
    c are ``offsets[c]:offsets[c + 1]``; symbols [E] ascending within each context, counts [E] >= 1.
    """

    kind: str
    weight: int
    half: int
    offsets: np.ndarray
    symbols: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True, eq=False)
class LayerModel:
    """One layer's model: band counts ``base`` [rows, V] with weight ``base_weight``, the
    in-packet counts' ``local_weight`` / ``local_half``, and the sparse ``contexts``."""

    base: np.ndarray
    base_weight: int
    local_weight: int
    local_half: int
    contexts: tuple[SparseContext, ...] = ()

    @property
    def vocab(self) -> int:
        return self.base.shape[1]


def _layer_problem(name: str, layer: LayerModel, rows: int, vocab: int, context_vocabs: Mapping[str, int]) -> str | None:
    base = layer.base
    if base.ndim != 2 or base.shape[0] not in (1, rows) or base.shape[1] != vocab or base.dtype.kind != "u":
        return f"{name} base counts must be unsigned [1 or {rows}, {vocab}], got {base.dtype} {list(base.shape)}"
    sums = base.sum(axis=1, dtype=np.uint64)
    if sums.min() < 1 or sums.max() >= 1 << 32:
        return f"{name} base counts must total 1 .. 2**32 - 1 per band"
    weights = [layer.base_weight, layer.local_weight, layer.local_half] + [v for c in layer.contexts for v in (c.weight, c.half)]
    if layer.base_weight < 1 or min(weights) < 0:
        return f"{name} weights must be non-negative with a positive base weight"
    total = vocab + layer.base_weight + layer.local_weight + sum(c.weight for c in layer.contexts)
    if total > MAX_TOTAL or max(weights) > MAX_TOTAL:
        return f"{name} weights add up to {total}, more than {MAX_TOTAL}"
    kinds = [c.kind for c in layer.contexts]
    if kinds != [k for k in LAYER_CONTEXTS[name] if k in kinds]:
        return f"{name} contexts must be a subsequence of {LAYER_CONTEXTS[name]}, got {kinds}"
    for context in layer.contexts:
        where = f"{name} {context.kind} context"
        offsets, symbols, counts = context.offsets, context.symbols, context.counts
        size = context_vocabs[context.kind] + 1
        if offsets.shape != (size,) or offsets.dtype.kind != "u" or offsets[0] != 0 or np.any(np.diff(offsets.astype(np.int64)) < 0):
            return f"{where}: offsets must be ascending unsigned [{size}] from 0"
        entries = int(offsets[-1])
        if symbols.shape != (entries,) or counts.shape != (entries,) or symbols.dtype.kind != "u" or counts.dtype.kind != "u":
            return f"{where}: symbols and counts must be unsigned [{entries}]"
        if entries and (symbols.max() >= vocab or counts.min() < 1 or counts.max() > MAX_COUNT):
            return f"{where}: ids must lie in [0, {vocab}) and counts in 1 .. {MAX_COUNT}"
        starts = np.zeros(entries, bool)
        starts[offsets[:-1][offsets[:-1] < entries].astype(np.int64)] = True
        if entries and np.any(np.diff(symbols.astype(np.int64))[~starts[1:]] <= 0):
            return f"{where}: ids must be strictly ascending within each context"
    return None


@dataclass(frozen=True, eq=False)
class EntropyTables:
    """Entropy tables of one model (see the module docstring). ``source`` says where they were
    loaded from (not part of the tables). Invalid contents raise ValueError."""

    token_rate: int
    semantic_vocab_size: int
    acoustic_vocab_size: int
    model_id: bytes
    semantic: LayerModel
    acoustic: LayerModel
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.token_rate not in TOKEN_RATES:
            raise ValueError(f"entropy tables: token rate must be one of {TOKEN_RATES}, got {self.token_rate}")
        for vocab in (self.semantic_vocab_size, self.acoustic_vocab_size):
            if not MIN_VOCAB <= vocab <= MAX_VOCAB:
                raise ValueError(f"entropy tables: vocabulary {vocab} outside {MIN_VOCAB}..{MAX_VOCAB}")
        if not isinstance(self.model_id, bytes) or len(self.model_id) != 16:
            raise ValueError("entropy tables: model id must be 16 bytes")
        rows = PAIRS_PER_COLUMN[self.token_rate]
        for name, layer, vocab in (("semantic", self.semantic, self.semantic_vocab_size), ("acoustic", self.acoustic, self.acoustic_vocab_size)):
            contexts = {"previous_column": vocab, "previous_band": vocab, "semantic": self.semantic_vocab_size}
            problem = _layer_problem(name, layer, rows, vocab, contexts)
            if problem is not None:
                raise ValueError(f"entropy tables: {problem}")

    @property
    def contexts(self) -> tuple[str, ...]:
        """The contexts these tables use (a subset of CONTEXTS)."""
        used = {"band"} if self.semantic.base.shape[0] > 1 or self.acoustic.base.shape[0] > 1 else set()
        used |= {c.kind for layer in (self.semantic, self.acoustic) for c in layer.contexts if c.weight > 0}
        if self.semantic.local_weight or self.acoustic.local_weight:
            used.add("local")
        return tuple(c for c in CONTEXTS if c in used)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The named arrays that store these tables (keys ``entropy.*``)."""
        arrays = {
            "entropy.info": np.array([TABLE_FORMAT, self.token_rate, self.semantic_vocab_size, self.acoustic_vocab_size], np.int64),
            "entropy.model_id": np.frombuffer(self.model_id, np.uint8).copy(),
        }
        for name in LAYERS:
            layer: LayerModel = getattr(self, name)
            arrays[f"entropy.{name}.base"] = layer.base
            arrays[f"entropy.{name}.weights"] = np.array([layer.base_weight, layer.local_weight, layer.local_half], np.int64)
            for context in layer.contexts:
                key = f"entropy.{name}.{context.kind}"
                arrays[f"{key}.weights"] = np.array([context.weight, context.half], np.int64)
                arrays[f"{key}.offsets"] = context.offsets
                arrays[f"{key}.symbols"] = context.symbols
                arrays[f"{key}.counts"] = context.counts
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], source: str = "") -> EntropyTables:
        """Tables from the arrays of ``to_arrays`` (other keys are ignored); ValueError when
        they are missing or malformed."""

        def get(key: str, dtype_kind: str = "iu") -> np.ndarray:
            if key not in arrays:
                raise ValueError(f"entropy tables: missing array {key}")
            value = np.asarray(arrays[key])
            if value.dtype.kind not in dtype_kind:
                raise ValueError(f"entropy tables: {key} must be integers, got {value.dtype}")
            return value

        info = get("entropy.info")
        if info.shape != (4,) or int(info[0]) != TABLE_FORMAT:
            raise ValueError(f"entropy tables: unsupported layout {info.tolist()} (this reader supports version {TABLE_FORMAT})")
        model_id = get("entropy.model_id", "u")
        if model_id.shape != (16,):
            raise ValueError("entropy tables: entropy.model_id must hold 16 bytes")
        layers = {}
        for name in LAYERS:
            weights = get(f"entropy.{name}.weights")
            if weights.shape != (3,):
                raise ValueError(f"entropy tables: entropy.{name}.weights must hold 3 numbers")
            contexts = []
            for kind in LAYER_CONTEXTS[name]:
                key = f"entropy.{name}.{kind}"
                if f"{key}.weights" not in arrays:
                    continue
                pair = get(f"{key}.weights")
                if pair.shape != (2,):
                    raise ValueError(f"entropy tables: {key}.weights must hold 2 numbers")
                contexts.append(SparseContext(
                    kind, int(pair[0]), int(pair[1]), get(f"{key}.offsets"), get(f"{key}.symbols"), get(f"{key}.counts"),
                ))
            layers[name] = LayerModel(
                get(f"entropy.{name}.base"), int(weights[0]), int(weights[1]), int(weights[2]), tuple(contexts)
            )
        return cls(
            int(info[1]), int(info[2]), int(info[3]), model_id.astype(np.uint8).tobytes(),
            layers["semantic"], layers["acoustic"], source,
        )

    @cached_property
    def table_id(self) -> bytes:
        """8 bytes naming these tables: the start of the SHA-256 of their arrays (names,
        dtypes, shapes and contents, in name order)."""
        digest = hashlib.sha256()
        for key, value in sorted(self.to_arrays().items()):
            value = np.ascontiguousarray(value, value.dtype.newbyteorder("<"))
            digest.update(f"{key}:{value.dtype.str}:{list(value.shape)};".encode())
            digest.update(value.tobytes())
        return digest.digest()[:TABLE_ID_BYTES]

    @cached_property
    def kernel_models(self) -> tuple[tuple, tuple]:
        """The (semantic, acoustic) models in the form the numba kernels take."""
        return kernel_model(self.semantic), kernel_model(self.acoustic)

    semantic_vocab = renamed_attribute("EntropyTables", "semantic_vocab", "semantic_vocab_size")
    acoustic_vocab = renamed_attribute("EntropyTables", "acoustic_vocab", "acoustic_vocab_size")

    def fits(self, token_rate: int, semantic_vocab_size: int, acoustic_vocab_size: int) -> bool:
        """Whether these tables code tokens of this rate and these vocabularies."""
        return (self.token_rate, self.semantic_vocab_size, self.acoustic_vocab_size) == (token_rate, semantic_vocab_size, acoustic_vocab_size)



EntropyTables.__init__ = renamed_keywords(  # type: ignore[method-assign]
    "EntropyTables", semantic_vocab="semantic_vocab_size", acoustic_vocab="acoustic_vocab_size"
)(EntropyTables.__init__)

def kernel_model(layer: LayerModel) -> tuple:
    """The tuple the kernels of :mod:`.entropy` take: (base cumulative counts [rows, V + 1],
    [W0, WL, HL], and per sparse context: kinds, first context row, weights, halves; then the
    contexts' rows concatenated: offsets [rows + 1], ids [E], cumulative counts [E + 1])."""
    base = np.zeros((layer.base.shape[0], layer.vocab + 1), np.int64)
    np.cumsum(layer.base, axis=1, dtype=np.int64, out=base[:, 1:])
    symbols: list[np.ndarray] = []
    kinds, bases, weights, halves, offsets, counts = [], [], [], [], [np.zeros(1, np.int64)], []
    start = 0
    for context in layer.contexts:
        kinds.append(KIND_CODES[context.kind])
        bases.append(start)
        weights.append(context.weight)
        halves.append(context.half)
        entry_base = sum(s.size for s in symbols)
        offsets.append(context.offsets[1:].astype(np.int64) + entry_base)
        symbols.append(context.symbols.astype(np.int64))
        counts.append(context.counts.astype(np.int64))
        start += context.offsets.size - 1
    prefix = np.zeros(sum(c.size for c in counts) + 1, np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=prefix[1:])
    as_array = lambda values: np.array(values, np.int64)  # noqa: E731
    return (
        base,
        as_array([layer.base_weight, layer.local_weight, layer.local_half]),
        as_array(kinds), as_array(bases), as_array(weights), as_array(halves),
        np.concatenate(offsets),
        np.concatenate(symbols) if symbols else np.zeros(0, np.int64),
        prefix,
    )
