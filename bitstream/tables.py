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

:func:`learn_tables` counts them from token arrays and fits the weights to held-back files;
``to_arrays`` / ``from_arrays`` give the named arrays stored in a safetensors file (keys
``entropy.*``), and ``table_id``, the first 8 bytes of their SHA-256, names the tables in a
stream header (FORMAT.md §8), so a stream never decodes with other tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from semanticodec.bitstream.header import DEFAULT_PACKET_COLUMNS, MAX_VOCAB, MIN_VOCAB, PAIRS_PER_COLUMN, TABLE_ID_BYTES, TOKEN_RATES
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
VALIDATION_EVERY = 5
"""``learn_tables`` fits the weights on every 5th file, with counts from the others."""

WEIGHT_STEPS = tuple(2.0**e for e in range(-3, 7))
"""Candidate context weights, in units of the base weight W0."""
HALF_COUNTS = (1, 4, 16, 64, 256, 1024)
BASE_WEIGHTS = tuple(1 << e for e in range(10, 21))


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
        return _kernel_model(self.semantic), _kernel_model(self.acoustic)

    semantic_vocab = renamed_attribute("EntropyTables", "semantic_vocab", "semantic_vocab_size")
    acoustic_vocab = renamed_attribute("EntropyTables", "acoustic_vocab", "acoustic_vocab_size")

    def fits(self, token_rate: int, semantic_vocab_size: int, acoustic_vocab_size: int) -> bool:
        """Whether these tables code tokens of this rate and these vocabularies."""
        return (self.token_rate, self.semantic_vocab_size, self.acoustic_vocab_size) == (token_rate, semantic_vocab_size, acoustic_vocab_size)



EntropyTables.__init__ = renamed_keywords(  # type: ignore[method-assign]
    "EntropyTables", semantic_vocab="semantic_vocab_size", acoustic_vocab="acoustic_vocab_size"
)(EntropyTables.__init__)

def _kernel_model(layer: LayerModel) -> tuple:
    """The tuple the kernels of :mod:`.entropy` take: (base cumulative counts [rows, V + 1],
    [W0, WL, HL], and per sparse context: kinds, first context row, weights, halves; then the
    contexts' rows concatenated: offsets [rows + 1], ids [E], cumulative counts [E + 1])."""
    base = np.zeros((layer.base.shape[0], layer.vocab + 1), np.int64)
    np.cumsum(layer.base, axis=1, dtype=np.int64, out=base[:, 1:])
    kinds, bases, weights, halves, offsets, symbols, counts = [], [], [], [], [np.zeros(1, np.int64)], [], []
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


def _context_keys(tokens: np.ndarray, ppc: int, kind: str, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """(context ids, following ids) of one file's pairs [T, 2] for a sparse context of ``layer``
    (0 semantic, 1 acoustic)."""
    own = tokens[:, layer]
    index = np.arange(len(tokens))
    if kind == "previous_column":
        return own[:-ppc] if len(own) > ppc else own[:0], own[ppc:]
    if kind == "previous_band":
        upper = index[(index % ppc) > 0]
        return own[upper - 1], own[upper]
    return tokens[:, 0], own


def _sparse(keys: np.ndarray, symbols: np.ndarray, context_vocab: int, vocab: int, kind: str) -> SparseContext:
    combined, counts = np.unique(keys * vocab + symbols, return_counts=True)
    contexts = combined // vocab
    symbol_dtype = np.uint16 if vocab <= 1 << 16 else np.uint32
    offsets = np.searchsorted(contexts, np.arange(context_vocab + 1)).astype(np.uint32)
    peak = np.zeros(context_vocab, np.int64)
    np.maximum.at(peak, contexts, counts)
    counts = np.maximum(1, counts // np.maximum(1, -(-peak // MAX_COUNT))[contexts])
    return SparseContext(kind, 0, 0, offsets, (combined % vocab).astype(symbol_dtype), counts.astype(np.uint16))


def _count_layer(files: Sequence[np.ndarray], ppc: int, layer: int, vocab: int, semantic_vocab_size: int, contexts: Sequence[str]) -> LayerModel:
    rows = ppc if "band" in contexts else 1
    base = np.zeros(rows * vocab, np.int64)
    for tokens in files:
        band = np.arange(len(tokens)) % ppc if rows > 1 else np.zeros(len(tokens), np.int64)
        base += np.bincount(band * vocab + tokens[:, layer], minlength=rows * vocab)
    base = base.reshape(rows, vocab)
    base[base.sum(axis=1) == 0] = 1
    kinds = [k for k in LAYER_CONTEXTS[LAYERS[layer]] if k in contexts]
    sparse = []
    for kind in kinds:
        pairs = [_context_keys(tokens, ppc, kind, layer) for tokens in files]
        keys = np.concatenate([k for k, _ in pairs] + [np.zeros(0, np.int64)])
        following = np.concatenate([s for _, s in pairs] + [np.zeros(0, np.int64)])
        context_vocab = semantic_vocab_size if kind == "semantic" else vocab
        sparse.append(_sparse(keys.astype(np.int64), following.astype(np.int64), context_vocab, vocab, kind))
    return LayerModel(base.astype(np.uint32), 1 << 16, 0, 0, tuple(sparse))


def _with_weights(layer: LayerModel, weights: Sequence[int]) -> LayerModel:
    """``layer`` with the flat weights [W0, WL, HL, W_1, H_1, ...]."""
    contexts = tuple(replace(c, weight=weights[3 + 2 * i], half=weights[4 + 2 * i]) for i, c in enumerate(layer.contexts))
    return replace(layer, base_weight=weights[0], local_weight=weights[1], local_half=weights[2], contexts=contexts)


def _fit_layer(layer: LayerModel, local: bool, score: Callable[[LayerModel], float]) -> list[int]:
    """Coordinate descent over the weights of ``layer`` on the grid; returns the best flat weights."""
    vocab = layer.vocab
    weights = _default_weights(layer, local)
    groups = [[0]] + ([[1, 2]] if local else []) + [[3 + 2 * i, 4 + 2 * i] for i in range(len(layer.contexts))]
    best = score(_with_weights(layer, weights))
    for _ in range(2):
        for group in groups:
            if group == [0]:
                candidates = [[w] for w in BASE_WEIGHTS]
            else:
                candidates = [[0, HALF_COUNTS[0]]] + [
                    [int(step * weights[0]), half] for step in WEIGHT_STEPS for half in HALF_COUNTS
                ]
            for values in candidates:
                trial = list(weights)
                for index, value in zip(group, values):
                    trial[index] = value
                if vocab + trial[0] + trial[1] + sum(trial[3::2]) > MAX_TOTAL:
                    continue
                bits = score(_with_weights(layer, trial))
                if bits < best:
                    best, weights = bits, trial
    return weights


def _packet_starts(lengths: Sequence[int], packet_pairs: int) -> np.ndarray:
    """Packet start offsets of files of these lengths laid end to end."""
    starts, offset = [], 0
    for length in lengths:
        starts.append(offset + np.arange(0, max(length, 1), packet_pairs))
        offset += length
    return np.concatenate(starts) if starts else np.zeros(1, np.int64)


def learn_tables(
    files: Sequence[np.ndarray],
    token_rate: int,
    semantic_vocab_size: int,
    acoustic_vocab_size: int,
    model_id: bytes,
    contexts: Sequence[str] = CONTEXTS,
    packet_pairs: int | None = None,
) -> EntropyTables:
    """Count entropy tables from token files (each int ``[T, 2]``, semantic and acoustic ids)
    and fit their weights.

    The weights are chosen on every VALIDATION_EVERY-th file (by the code length of
    packets of ``packet_pairs`` pairs, default the format's default packet, under counts from
    the other files); the stored counts then come from all files. ``contexts`` switches the
    contexts of CONTEXTS (to measure what each one buys); fewer than VALIDATION_EVERY files
    keep the default weights.
    """
    unknown = sorted(set(contexts) - set(CONTEXTS))
    if unknown:
        raise ValueError(f"unknown contexts {unknown}; choose from {CONTEXTS}")
    if not files:
        raise ValueError("no token files to learn entropy tables from")
    from semanticodec.bitstream.entropy import layer_bits

    files = [np.asarray(f, dtype=np.int64) for f in files]
    for i, tokens in enumerate(files):
        if tokens.ndim != 2 or tokens.shape[1] != 2:
            raise ValueError(f"token file {i} must have shape [T, 2], got {list(tokens.shape)}")
        if len(tokens) and (tokens.min() < 0 or tokens[:, 0].max() >= semantic_vocab_size or tokens[:, 1].max() >= acoustic_vocab_size):
            raise ValueError(f"token file {i} holds ids outside the vocabularies ({semantic_vocab_size}, {acoustic_vocab_size})")
    ppc = PAIRS_PER_COLUMN[token_rate]
    packet_pairs = packet_pairs or DEFAULT_PACKET_COLUMNS[token_rate] * ppc
    local = "local" in contexts
    vocabs = (semantic_vocab_size, acoustic_vocab_size)
    fitted = [None, None]
    if len(files) >= VALIDATION_EVERY:
        held = files[::VALIDATION_EVERY]
        rest = [f for i, f in enumerate(files) if i % VALIDATION_EVERY]
        tokens = np.concatenate(held)
        starts = _packet_starts([len(f) for f in held], packet_pairs)
        for layer in (0, 1):
            counted = _count_layer(rest, ppc, layer, vocabs[layer], semantic_vocab_size, contexts)
            semantic = tokens[:, 0] if layer else np.zeros(0, np.int64)

            def score(model: LayerModel, layer: int = layer, semantic: np.ndarray = semantic) -> float:
                return layer_bits(tokens[:, layer], semantic, starts, ppc, _kernel_model(model))

            fitted[layer] = _fit_layer(counted, local, score)
    layers = []
    for layer in (0, 1):
        counted = _count_layer(files, ppc, layer, vocabs[layer], semantic_vocab_size, contexts)
        weights = fitted[layer] or _default_weights(counted, local)
        layers.append(_with_weights(counted, weights))
    return EntropyTables(token_rate, semantic_vocab_size, acoustic_vocab_size, bytes(model_id), layers[0], layers[1])


def _default_weights(layer: LayerModel, local: bool) -> list[int]:
    """Starting (and, without validation files, final) weights: [W0, WL, HL, W_1, H_1, ...]."""
    base = 1 << 16
    weights = [base, 4 * base if local else 0, 64]
    for _ in layer.contexts:
        weights += [8 * base, 16]
    return weights
