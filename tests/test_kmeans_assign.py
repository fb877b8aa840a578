"""kmeans.assign: brute-force equality, numpy/torch agreement, official semantic tokens, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.fill import fill
from parity import reference
from semanticodec.kmeans import assign

NEAR_TIE = 1e-3  # reference README §7: exempt positions whose float64 margin is below this


def brute_force_f64(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact argmin, squared distance and margin (second best - best) in float64, unbatched."""
    d = ((x.astype(np.float64)[:, None, :] - c.astype(np.float64)[None, :, :]) ** 2).sum(-1)
    order = np.argsort(d, axis=1)
    rows = np.arange(len(x))
    return order[:, 0], d[rows, order[:, 0]], d[rows, order[:, 1]] - d[rows, order[:, 0]]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((1000, 24)).astype(np.float32), rng.standard_normal((300, 24)).astype(np.float32)


@pytest.mark.parametrize("engine", ["torch", "faiss"])
@pytest.mark.parametrize("batch_size", [7, 4096])
def test_equals_brute_force(data, engine, batch_size):
    x, c = data
    ids, dist = assign(x, c, batch_size=batch_size, engine=engine)
    want, want_dist, margin = brute_force_f64(x, c)
    assert ids.dtype == np.int64 and dist.dtype == np.float32 and ids.shape == dist.shape == (1000,)
    clear = margin > 1e-4 * want_dist.max()
    assert clear.sum() >= 990, "too many near-ties in the test data"
    np.testing.assert_array_equal(ids[clear], want[clear])
    np.testing.assert_allclose(dist, want_dist, rtol=0, atol=1e-5 * want_dist.max())


def test_numpy_and_torch_inputs_identical(data):
    x, c = data
    ids_np, dist_np = assign(x, c, batch_size=100)
    ids_t, dist_t = assign(torch.from_numpy(x), torch.from_numpy(c), batch_size=100)
    assert isinstance(ids_t, torch.Tensor) and ids_t.dtype == torch.int64
    np.testing.assert_array_equal(ids_np, ids_t.numpy())
    np.testing.assert_array_equal(dist_np, dist_t.numpy())
    ids_f, _ = assign(torch.from_numpy(x), c, engine="faiss")
    assert isinstance(ids_f, torch.Tensor)
    np.testing.assert_array_equal(ids_f.numpy(), assign(x, c, engine="faiss")[0])


def test_batching_does_not_change_ids(data):
    """Block sizes change only the BLAS kernel (last bits of a distance), never an id here."""
    x, c = data
    full_ids, full_dist = assign(x, c, batch_size=len(x))
    for batch_size in (1, 13, 999):
        ids, dist = assign(x, c, batch_size=batch_size)
        np.testing.assert_array_equal(ids, full_ids)
        np.testing.assert_allclose(dist, full_dist, rtol=1e-6)


def test_exact_in_float64():
    rng = np.random.default_rng(3)
    x, c = rng.standard_normal((200, 8)), rng.standard_normal((50, 8))
    ids, dist = assign(x, c, batch_size=33)
    want, want_dist, _ = brute_force_f64(x, c)
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "rows"),
    [("tr100", None), ("tr50", "stacked_feature_w0"), ("tr25", "stacked_feature_w0")],
)
@pytest.mark.parametrize("engine", ["torch", "faiss"])
def test_official_semantic_tokens(name, rows, engine):
    """Semantic tokens of the official code (quant_mem_efficient) on its AudioMAE features."""
    if name == "tr100":
        ref = reference("tr100_encode")
        x = np.concatenate([ref["audiomae_repr_w0"][0, 1:], ref["audiomae_repr_w1"][0, 1:]])
        want = ref["tokens_untrimmed"][0, :, 0]
    else:
        ref = reference(name)
        x = ref[rows][0]
        want = ref["semantic_tokens_w0"][0]
    codebook = fill("semantic_codebook", (4096, x.shape[1]))
    ids, dist = assign(x, codebook, engine=engine)
    clear = ref["semantic_margin_f64"] >= NEAR_TIE
    mismatched = int((ids != want).sum())
    print(f"{name} {engine}: {mismatched}/{len(ids)} tokens differ, {int((~clear).sum())} near-ties exempt")
    np.testing.assert_array_equal(ids[clear], want[clear])
    if engine == "torch":
        assert mismatched == 0


def test_bad_input(data):
    x, c = data
    with pytest.raises(ValueError, match="dimension mismatch"):
        assign(x, c[:, :10])
    with pytest.raises(ValueError, match="2-D"):
        assign(x[0], c)
    with pytest.raises(ValueError, match="empty"):
        assign(x, c[:0])
    with pytest.raises(ValueError, match="floating point"):
        assign(x.astype(np.int32), c)
    with pytest.raises(ValueError, match="batch_size"):
        assign(x, c, batch_size=0)
    with pytest.raises(ValueError, match="engine"):
        assign(x, c, engine="cuda")
    bad = x.copy()
    bad[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        assign(bad, c)
    for value in (np.nan, np.inf, -np.inf):  # in the centroids too, wherever it is
        bad = c.copy()
        bad[-1, -1] = value
        with pytest.raises(ValueError, match="NaN or infinite"):
            assign(x, bad)
    with pytest.raises(ValueError, match="numpy arrays or torch tensors"):
        assign(x.tolist(), c)
