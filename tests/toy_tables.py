"""Synthetic token files with the structure entropy coding exploits, and tables learned from them."""

from __future__ import annotations

import functools

import numpy as np

from semanticodec.bitstream import EntropyTables, learn_tables
from semanticodec.bitstream.header import PAIRS_PER_COLUMN

TOY_MODEL = bytes(range(100, 116))


def structured_tokens(rng: np.random.Generator, pairs: int, semantic_vocab_size: int, acoustic_vocab_size: int, token_rate: int = 100) -> np.ndarray:
    """Pairs [pairs, 2]: skewed ids per band; a semantic id repeats the previous column's id in
    its band with probability 0.7; an acoustic id follows its semantic id with probability 0.6."""
    ppc = PAIRS_PER_COLUMN[token_rate]
    ranks = np.minimum(rng.zipf(1.6, (pairs, 2)) - 1, 10**6)
    tokens = np.stack([(ranks[:, 0] * 7 + np.arange(pairs) % ppc) % semantic_vocab_size, ranks[:, 1] % acoustic_vocab_size], axis=1)
    repeat = rng.random(pairs) < 0.7
    follow = rng.random(pairs) < 0.6
    for i in range(pairs):
        if i >= ppc and repeat[i]:
            tokens[i, 0] = tokens[i - ppc, 0]
        if follow[i]:
            tokens[i, 1] = (3 * tokens[i, 0] + 1) % acoustic_vocab_size
    return tokens.astype(np.int64)


@functools.lru_cache(maxsize=8)
def toy_tables(token_rate: int = 100, semantic_vocab_size: int = 64, acoustic_vocab_size: int = 128, model_id: bytes = TOY_MODEL) -> EntropyTables:
    """Tables learned (weights fitted) from 6 structured files of 600 pairs."""
    rng = np.random.default_rng(token_rate + semantic_vocab_size + acoustic_vocab_size)
    files = [structured_tokens(rng, 600, semantic_vocab_size, acoustic_vocab_size, token_rate) for _ in range(6)]
    return learn_tables(files, token_rate, semantic_vocab_size, acoustic_vocab_size, model_id)
