"""Learning entropy tables: counting a model's token statistics and fitting the weights.

:func:`learn_tables` counts the contexts of :mod:`.tables` from token arrays and chooses the
weights by the code length of held-back files under the range coder of :mod:`.entropy` (so
this module, unlike the tables themselves, loads numba).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from semanticodec.bitstream.entropy import layer_bits
from semanticodec.bitstream.header import DEFAULT_PACKET_COLUMNS, PAIRS_PER_COLUMN
from semanticodec.bitstream.tables import (
    CONTEXTS,
    LAYER_CONTEXTS,
    LAYERS,
    MAX_COUNT,
    MAX_TOTAL,
    EntropyTables,
    LayerModel,
    SparseContext,
    kernel_model,
)

VALIDATION_EVERY = 5
"""``learn_tables`` fits the weights on every 5th file, with counts from the others."""

WEIGHT_STEPS = tuple(2.0**e for e in range(-3, 7))
"""Candidate context weights, in units of the base weight W0."""
HALF_COUNTS = (1, 4, 16, 64, 256, 1024)
BASE_WEIGHTS = tuple(1 << e for e in range(10, 21))


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
    flat = np.zeros(rows * vocab, np.int64)
    for tokens in files:
        band = np.arange(len(tokens)) % ppc if rows > 1 else np.zeros(len(tokens), np.int64)
        flat += np.bincount(band * vocab + tokens[:, layer], minlength=rows * vocab)
    base = flat.reshape(rows, vocab)
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
    fitted: list[list[int] | None] = [None, None]
    if len(files) >= VALIDATION_EVERY:
        held = files[::VALIDATION_EVERY]
        rest = [f for i, f in enumerate(files) if i % VALIDATION_EVERY]
        tokens = np.concatenate(held)
        starts = _packet_starts([len(f) for f in held], packet_pairs)
        for layer in (0, 1):
            counted = _count_layer(rest, ppc, layer, vocabs[layer], semantic_vocab_size, contexts)
            semantic = tokens[:, 0] if layer else np.zeros(0, np.int64)

            def score(model: LayerModel, layer: int = layer, semantic: np.ndarray = semantic) -> float:
                return layer_bits(tokens[:, layer], semantic, starts, ppc, kernel_model(model))

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
