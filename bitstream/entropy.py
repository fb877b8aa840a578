"""Range coding of one packet layer under the context-mixing model of :mod:`.tables`.

The model (FORMAT.md §8) gives every id ``s`` of a vocabulary of size V, at position i of
its packet, an integer cumulative frequency

    cum(s) = s + base[row][< s] * W0 // NB + sum_k C_k(< s) * T_k // N_k + L(< s) * TL // i

where ``base[row]`` are the static counts of the id's frequency band (NB their total),
C_k the static counts of a sparse context (the previous column's id in the same band, the
lower band's id in the same column, or, for the acoustic layer, the pair's semantic id;
N_k their total, 0 when the context is unseen or absent), L the counts of the ids already
coded in this packet (i of them) and ``T = W * N // (N + H)`` the weight a context earns
with N observations (W its full weight, H its half count). The frequency of ``s`` is
``cum(s + 1) - cum(s) >= 1`` and the total ``cum(V) = V + W0 + sum_k T_k + TL``, at most
2**24, so every id stays codable.

The range coder keeps a 48-bit interval, emits bytes MSB-first when the range falls below
2**40 and propagates carries into the bytes already written; it ends with the fewest bytes
that pin a value inside the final interval and drops trailing zero bytes (a decoder reads
zeros past the end). Every kernel is numba-compiled: no Python runs per id. This is the only
module of the format that imports numba (through :mod:`semanticodec.jit`); :mod:`.stream` imports
it when it codes or decodes a range-coded packet and :mod:`.learn` (learning tables) at its top,
so fixed-width streams never load it.
"""

from __future__ import annotations

import numpy as np

from semanticodec.bitstream.tables import PREVIOUS_BAND, PREVIOUS_COLUMN
from semanticodec.jit import njit

TOP = 1 << 48
"""The coder interval is [0, TOP): 48 bits."""
BOTTOM = 1 << 40
"""A byte is shifted out whenever the range drops below this."""
OK = 0
CORRUPT = 1
"""Decoder status: a value outside the model's total (the layer was not made by this model)."""
TRAILING_ZERO = 2
"""Decoder status: the layer ends with a zero byte, which a writer never emits."""


@njit(nogil=True)
def _fenwick_add(tree: np.ndarray, symbol: int) -> None:
    i = symbol + 1
    while i < tree.size:
        tree[i] += 1
        i += i & -i


@njit(nogil=True)
def _fenwick_below(tree: np.ndarray, symbol: int) -> int:
    """Count of the ids < ``symbol`` added so far."""
    total = 0
    i = symbol
    while i > 0:
        total += tree[i]
        i -= i & -i
    return total


@njit(nogil=True)
def _first_not_below(symbols: np.ndarray, lo: int, hi: int, symbol: int) -> int:
    """Index of the first entry of the sorted run ``symbols[lo:hi]`` that is >= ``symbol``."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if symbols[mid] < symbol:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(nogil=True)
def _contexts(i, ids, semantic, ppc, model, lo, hi, count, weight) -> int:
    """Fill the sparse contexts' list bounds, counts and earned weights for position ``i``
    (relative to the packet start); returns the sum of the weights."""
    kinds, bases, weights, halves, offsets, prefix = model[2], model[3], model[4], model[5], model[6], model[8]
    band = i % ppc
    earned = 0
    for k in range(kinds.size):
        key = -1
        if kinds[k] == PREVIOUS_COLUMN:
            if i >= ppc:
                key = ids[i - ppc]
        elif kinds[k] == PREVIOUS_BAND:
            if band > 0:
                key = ids[i - 1]
        else:
            key = semantic[i]
        weight[k] = 0
        count[k] = 0
        if key >= 0:
            context = bases[k] + key
            lo[k] = offsets[context]
            hi[k] = offsets[context + 1]
            n = prefix[hi[k]] - prefix[lo[k]]
            if n > 0:
                count[k] = n
                weight[k] = weights[k] * n // (n + halves[k])
                earned += weight[k]
    return earned


@njit(nogil=True)
def _cum(symbol, row, model, lo, hi, count, weight, tree, coded, local_weight) -> int:
    """The model's cumulative frequency of ``symbol`` (sum of the frequencies of the ids below it)."""
    base, scalars, symbols, prefix = model[0], model[1], model[7], model[8]
    total_base = base[row, base.shape[1] - 1]
    value = symbol + base[row, symbol] * scalars[0] // total_base
    for k in range(lo.size):
        if weight[k] > 0:
            j = _first_not_below(symbols, lo[k], hi[k], symbol)
            value += (prefix[j] - prefix[lo[k]]) * weight[k] // count[k]
    if local_weight > 0:
        value += _fenwick_below(tree, symbol) * local_weight // coded
    return value


@njit(nogil=True)
def _scratch(model):
    """Per-layer working arrays: the sparse contexts' list bounds, counts and weights, and the
    Fenwick tree of the in-packet counts (a dummy when the local weight is 0)."""
    k = model[2].size
    vocab = model[0].shape[1] - 1
    tree = np.zeros(vocab + 1 if model[1][1] > 0 else 1, np.int64)
    return np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64), tree


@njit(nogil=True)
def _position(i, ids, semantic, ppc, model, lo, hi, count, weight):
    """Set up the model at position ``i``: returns (total, base row, local weight)."""
    earned = _contexts(i, ids, semantic, ppc, model, lo, hi, count, weight)
    scalars = model[1]
    local = 0
    if i > 0 and scalars[1] > 0:
        local = scalars[1] * i // (i + scalars[2])
    row = i % ppc if model[0].shape[0] > 1 else 0
    return model[0].shape[1] - 1 + scalars[0] + earned + local, row, local


@njit(nogil=True)
def _carry(out: np.ndarray, j: int) -> None:
    k = j - 1
    while out[k] == 0xFF:
        out[k] = 0
        k -= 1
    out[k] += 1


@njit(nogil=True)
def encode_layer(ids, semantic, ppc, model, out) -> int:
    """Range-code ``ids`` [n] (one packet's layer) into ``out``; returns the byte count, or
    -1 as soon as more than ``out.size - 8`` bytes would be needed."""
    limit = out.size - 8
    lo, hi, count, weight, tree = _scratch(model)
    low = 0
    rng = TOP - 1
    j = 0
    for i in range(ids.size):
        total, row, local = _position(i, ids, semantic, ppc, model, lo, hi, count, weight)
        s = ids[i]
        start = _cum(s, row, model, lo, hi, count, weight, tree, i, local)
        stop = _cum(s + 1, row, model, lo, hi, count, weight, tree, i, local)
        r = rng // total
        low += r * start
        rng = r * (stop - start)
        if low >= TOP:
            low -= TOP
            _carry(out, j)
        while rng < BOTTOM:
            if j >= limit:
                return -1
            out[j] = low >> 40
            j += 1
            low = (low & (BOTTOM - 1)) << 8
            rng <<= 8
        if tree.size > 1:
            _fenwick_add(tree, s)
    for k in range(7):
        unit = 1 << (48 - 8 * k)
        value = (low + unit - 1) // unit * unit
        if value < low + rng:
            if value >= TOP:
                value -= TOP
                _carry(out, j)
            for t in range(k):
                out[j] = (value >> (40 - 8 * t)) & 0xFF
                j += 1
            break
    while j > 0 and out[j - 1] == 0:
        j -= 1
    return j


@njit(nogil=True)
def decode_layer(data, n, semantic, ppc, model, ids) -> int:
    """Decode ``n`` ids from the layer bytes ``data`` into ``ids``; returns OK, CORRUPT or
    TRAILING_ZERO. Bounded work: n ids, each a binary search over the vocabulary."""
    vocab = model[0].shape[1] - 1
    lo, hi, count, weight, tree = _scratch(model)
    if data.size and data[data.size - 1] == 0:
        return TRAILING_ZERO
    code = 0
    pos = 0
    for _ in range(6):
        code = (code << 8) | (np.int64(data[pos]) if pos < data.size else 0)
        pos += 1
    rng = TOP - 1
    for i in range(n):
        total, row, local = _position(i, ids, semantic, ppc, model, lo, hi, count, weight)
        r = rng // total
        target = code // r
        if target >= total:
            return CORRUPT
        first, last = 0, vocab
        start = 0
        while last - first > 1:
            mid = (first + last) >> 1
            value = _cum(mid, row, model, lo, hi, count, weight, tree, i, local)
            if value <= target:
                first = mid
                start = value
            else:
                last = mid
        stop = _cum(first + 1, row, model, lo, hi, count, weight, tree, i, local)
        ids[i] = first
        code -= r * start
        rng = r * (stop - start)
        while rng < BOTTOM:
            code = (code << 8) | (np.int64(data[pos]) if pos < data.size else 0)
            pos += 1
            rng <<= 8
        if tree.size > 1:
            _fenwick_add(tree, first)
    return OK


@njit(nogil=True)
def layer_bits(ids, semantic, starts, ppc, model) -> float:
    """Ideal code length in bits, sum of log2(total / frequency), of ``ids`` cut into packets
    at ``starts`` (ascending, first 0; the last packet runs to the end), as ``encode_layer``
    codes them. Used to fit the model's weights."""
    lo, hi, count, weight, tree = _scratch(model)
    bits = 0.0
    for p in range(starts.size):
        begin = starts[p]
        end = starts[p + 1] if p + 1 < starts.size else ids.size
        packet = ids[begin:end]
        packet_semantic = semantic[begin:end] if semantic.size else semantic
        tree[:] = 0
        for i in range(end - begin):
            total, row, local = _position(i, packet, packet_semantic, ppc, model, lo, hi, count, weight)
            s = packet[i]
            start = _cum(s, row, model, lo, hi, count, weight, tree, i, local)
            stop = _cum(s + 1, row, model, lo, hi, count, weight, tree, i, local)
            bits += np.log2(total / (stop - start))
            if tree.size > 1:
                _fenwick_add(tree, s)
    return bits
