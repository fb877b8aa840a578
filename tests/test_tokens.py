"""LM token formats: ids of the special tokens, conversions and their inverses, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semanticodec.tokens import (
    TokenFormat,
    check_pairs,
    convert,
    flatten,
    merge,
    pad_batch,
    rows_per_column,
    semantic_only,
    strip_semantic,
    unflatten,
)

V, A = 16384, 8192


def _pairs(t: int, seed: int = 0, v: int = V, a: int = A) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, v, t), rng.integers(0, a, t)], axis=-1)


def test_special_ids_are_stated() -> None:
    flat = TokenFormat("flat", V, A)
    assert (flat.bos, flat.eos, flat.pad, flat.vocab_size) == (24576, 24577, 24578, 24579)
    sem = TokenFormat("semantic", 4096)
    assert (sem.bos, sem.eos, sem.pad, sem.vocab_size) == (4096, 4097, 4098, 4099)
    with pytest.raises(ValueError, match="no single vocabulary"):
        _ = TokenFormat("pairs", V).bos
    assert rows_per_column(100) == 8 and rows_per_column(50) == 4 and rows_per_column(25) == 4


def test_flat_layout_is_interleaved_with_offset() -> None:
    pairs = np.array([[5, 7], [0, 8191], [16383, 0]])
    flat = flatten(pairs, V, bos=True, eos=True)
    np.testing.assert_array_equal(flat, [24576, 5, V + 7, 0, V + 8191, 16383, V, 24577])
    np.testing.assert_array_equal(semantic_only(pairs, V, bos=True), [V, 5, 0, 16383])
    padded = np.concatenate([flat, [24578, 24578]])
    np.testing.assert_array_equal(unflatten(padded, V), pairs)


@settings(max_examples=50, deadline=None)
@given(
    t=st.integers(0, 300),
    v=st.sampled_from([2, 4096, 8192, 16384, 32768]),
    bos=st.booleans(),
    eos=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trips(t: int, v: int, bos: bool, eos: bool, seed: int) -> None:
    pairs = _pairs(t, seed, v)
    flat = flatten(pairs, v, bos=bos, eos=eos)
    assert flat.shape == (2 * t + bos + eos,) and flat.dtype == np.int64
    assert flat.size == 0 or flat.max() < TokenFormat("flat", v).vocab_size
    np.testing.assert_array_equal(unflatten(flat, v), pairs)
    sem = semantic_only(pairs, v, bos=bos, eos=eos)
    np.testing.assert_array_equal(strip_semantic(sem, v), pairs[:, 0])
    np.testing.assert_array_equal(merge(strip_semantic(sem, v), pairs[:, 1]), pairs)
    np.testing.assert_array_equal(convert(flat, "flat", "pairs", v), pairs)
    np.testing.assert_array_equal(convert(pairs, "pairs", "flat", v, bos=bos, eos=eos), flat)
    np.testing.assert_array_equal(convert(flat, "flat", "semantic", v, bos=bos, eos=eos), sem)
    np.testing.assert_array_equal(convert(sem, "semantic", "semantic", v, bos=bos, eos=eos), sem)


def test_batches_and_tensors() -> None:
    batch = np.stack([_pairs(10, 1), _pairs(10, 2)])
    flat = flatten(batch, V, eos=True)
    assert flat.shape == (2, 21) and (flat[:, -1] == V + A + 1).all()
    for row, pairs in zip(flat, batch):
        np.testing.assert_array_equal(unflatten(row, V), pairs)
    assert semantic_only(batch, V).shape == (2, 10)
    tensor = flatten(torch.from_numpy(batch[0]), V)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.int64
    back = TokenFormat("flat", V).decode(tensor)
    assert isinstance(back, torch.Tensor) and torch.equal(back, torch.from_numpy(batch[0]))
    np.testing.assert_array_equal(merge(batch[..., 0], batch[..., 1]), batch)


def test_pad_batch() -> None:
    ids, lengths = pad_batch([np.array([1, 2, 3]), torch.tensor([4])], pad_id=99)
    assert ids.tolist() == [[1, 2, 3], [4, 99, 99]] and lengths.tolist() == [3, 1]
    assert pad_batch([np.array([1])], 0, length=4)[0].shape == (1, 4)
    with pytest.raises(ValueError, match="longer than length 2"):
        pad_batch([np.arange(3)], 0, length=2)
    with pytest.raises(ValueError, match="no sequences"):
        pad_batch([], 0)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"semantic ids must lie in \[0, 16384\)"):
        flatten(np.array([[V, 0]]), V)
    with pytest.raises(ValueError, match=r"acoustic ids must lie in \[0, 8192\)"):
        flatten(np.array([[0, -1]]), V)
    with pytest.raises(ValueError, match=r"shape \[T, 2\]"):
        flatten(np.zeros((3, 3), np.int64), V)
    with pytest.raises(ValueError, match="must be integers"):
        flatten(np.zeros((3, 2)), V)
    with pytest.raises(ValueError, match="not interleaved at pair 1"):
        unflatten(np.array([1, V + 1, V + 2, 3]), V)
    with pytest.raises(ValueError, match="even count"):
        unflatten(np.array([1, V + 1, 2]), V)
    with pytest.raises(ValueError, match="special id 24577 at position 2"):
        unflatten(np.array([1, V + 1, V + A + 1, 2, V]), V)
    with pytest.raises(ValueError, match=r"flat ids must lie in \[0, 24579\)"):
        unflatten(np.array([24579]), V)
    with pytest.raises(ValueError, match="acoustic ids are missing"):
        convert(np.array([1, 2]), "semantic", "pairs", V)
    with pytest.raises(ValueError, match="format must be one of"):
        TokenFormat("interleaved", V)
    with pytest.raises(ValueError, match="semantic_vocab_size must be an integer >= 2"):
        TokenFormat("flat", 1)
    with pytest.raises(ValueError, match="same shape"):
        merge(np.zeros(3, np.int64), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="token_rate must be one of"):
        rows_per_column(40)
    with pytest.raises(ValueError, match="no BOS/EOS"):
        TokenFormat("pairs", V).encode(_pairs(2), bos=True)


def test_old_keyword_spellings_warn_and_work() -> None:
    pairs = np.array([[3, 5], [0, 7]])
    with pytest.warns(DeprecationWarning, match=r"TokenFormat\(semantic_vocab=\.\.\.\) is deprecated, use semantic_vocab_size"):
        old = TokenFormat("flat", semantic_vocab=10, acoustic_vocab_size=8)
    assert old == TokenFormat("flat", semantic_vocab_size=10, acoustic_vocab_size=8)
    with pytest.warns(DeprecationWarning, match=r"TokenFormat.semantic_vocab is deprecated"):
        assert old.semantic_vocab == 10
    with pytest.warns(DeprecationWarning, match=r"flatten\(acoustic_vocab="):
        flat = flatten(pairs, 10, acoustic_vocab=8)
    np.testing.assert_array_equal(flat, flatten(pairs, 10, 8))
    with pytest.warns(DeprecationWarning, match=r"unflatten\(semantic_vocab="):
        np.testing.assert_array_equal(unflatten(flat, semantic_vocab=10, acoustic_vocab_size=8), pairs)
    with pytest.raises(TypeError, match="both semantic_vocab= and semantic_vocab_size="):
        check_pairs(pairs, semantic_vocab=10, semantic_vocab_size=10)
