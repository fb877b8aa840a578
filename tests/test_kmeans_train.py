"""kmeans.fit: agreement with scikit-learn, determinism, resume, out-of-core shards, streams,
empty clusters, engines, codebook files and errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

import semanticodec.kmeans.trainer as train_module
from semanticodec.kmeans import (
    KMeansConfig,
    assign,
    codebook_filename,
    fit,
    kmeans_plusplus,
    official_codebook_path,
    save_codebook,
    select_engine,
)
from semanticodec.kmeans.codebook import load_codebook
from semanticodec.kmeans.data import reservoir_sample

QUIET = {"progress": False}


def blobs(n: int, k: int, dim: int, seed: int, spread: float = 4.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, dim)) * spread
    return (centers[rng.integers(0, k, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    return float(assign(x.astype(np.float64), centroids.astype(np.float64))[1].sum())


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return blobs(3000, 24, 16, seed=1)


def write_shards(tmp_path, x: np.ndarray, sizes: list[int], dtype=np.float32) -> list:
    paths, start = [], 0
    for i, size in enumerate(sizes):
        path = tmp_path / f"part_{i:02d}.npy"
        np.save(path, x[start : start + size].astype(dtype))
        paths.append(path)
        start += size
    assert start == len(x)
    return paths


def separated_blobs(n: int, k: int, dim: int, seed: int) -> np.ndarray:
    """Unit-variance blobs centred on distinct corners of the cube [-10, 10]^dim."""
    rng = np.random.default_rng(seed)
    corners = np.unique(rng.choice([-10.0, 10.0], size=(4 * k, dim)), axis=0)[:k]
    return (corners[rng.integers(0, k, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def test_objective_matches_scikit_learn():
    """Best of 4 seeds within 1 % of scikit-learn's KMeans (best of 4 k-means++ starts).

    Single runs of either implementation sometimes stop in a local optimum (two seeds in one
    blob); the best of 4 reaches the global one on this data.
    """
    for n, k, dim in [(4000, 32, 16), (3000, 64, 12)]:
        data = separated_blobs(n, k, dim, seed=1)
        ours = [inertia(data, fit(data, k, niter=20, seed=s, **QUIET).centroids) for s in range(4)]
        reference = KMeans(k, n_init=4, random_state=0).fit(data.astype(np.float64))
        theirs = inertia(data, reference.cluster_centers_)
        print(f"n={n} k={k} D={dim}: ours/scikit-learn per seed {np.round(np.array(ours) / theirs, 4)}")
        assert abs(min(ours) / theirs - 1.0) <= 0.01


def test_same_iterations_as_scikit_learn_lloyd():
    """From the same start, our iterations are scikit-learn's Lloyd iterations (overlapping blobs)."""
    data = blobs(4000, 32, 16, seed=0, spread=2.5)
    start = fit(data, 32, niter=1, seed=0, **QUIET)
    ours = fit(data, 32, niter=11, seed=0, **QUIET)
    theirs = KMeans(32, init=start.centroids.astype(np.float64), n_init=1, max_iter=10, tol=0.0, algorithm="lloyd")
    theirs.fit(data.astype(np.float64))
    error = np.abs(ours.centroids - theirs.cluster_centers_).max()
    print(f"max |ours - scikit-learn| after 10 iterations from the same start: {error:.2e}")
    assert error < 1e-4


def test_lloyd_update_is_the_cluster_mean(x):
    """Iteration t's centroids are the means of the points assigned to iteration t-1's centroids."""
    before = fit(x, 24, niter=3, seed=2, **QUIET)
    after = fit(x, 24, niter=4, seed=2, **QUIET)
    ids = assign(x, before.centroids, engine="faiss")[0]
    assert after.splits == 0 and np.bincount(ids, minlength=24).min() > 0
    means = np.stack([x[ids == j].astype(np.float64).mean(axis=0) for j in range(24)])
    np.testing.assert_allclose(after.centroids, means, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(after.counts, np.bincount(ids, minlength=24))
    assert after.objective[3] == pytest.approx(inertia(x, before.centroids), rel=1e-5)
    assert np.all(np.diff(after.objective) <= 1e-6 * after.objective[0])


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_same_seed_same_codebook(x, init):
    a = fit(x, 24, niter=5, seed=11, init=init, **QUIET)
    b = fit(x, 24, KMeansConfig(niter=5, seed=11, init=init), **QUIET)
    c = fit(x, 24, niter=5, seed=12, init=init, **QUIET)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.objective, b.objective)
    assert not np.array_equal(a.centroids, c.centroids)
    assert a.centroids.dtype == np.float32 and a.centroids.shape == (24, 16)
    assert a.iterations == 5 and a.n_train == a.n_total == 3000 and a.resumed_from == 0
    assert "faiss-cpu" in a.engine


def test_engines_agree(x):
    """With the same ids the update is the same arithmetic, so the codebooks are bit-identical."""
    a = fit(x, 24, niter=6, seed=4, engine="faiss-cpu", **QUIET)
    b = fit(x, 24, niter=6, seed=4, engine="torch-cpu", **QUIET)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-5)
    assert "torch-cpu" in b.engine


def test_resume_after_interruption(tmp_path, monkeypatch):
    """A run killed in iteration 4 and restarted ends with the uninterrupted codebook.

    The data has 10 distinct points for k=14, so empty clusters are split at every iteration and
    the checkpointed random state matters.
    """
    data = np.repeat(blobs(10, 10, 6, seed=5), 40, axis=0)
    full = fit(data, 14, niter=7, seed=1, **QUIET)
    assert full.splits >= 7
    checkpoint = tmp_path / "run.ckpt.npz"
    real_step, calls = train_module._lloyd_step, []

    def crashing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "_lloyd_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        fit(data, 14, niter=7, seed=1, state_file=checkpoint, **QUIET)
    monkeypatch.setattr(train_module, "_lloyd_step", real_step)
    with np.load(checkpoint) as saved:
        assert int(saved["iteration"]) == 3 and not saved["rng_state"].dtype.hasobject
    resumed = fit(data, 14, niter=7, seed=1, state_file=checkpoint, **QUIET)
    assert resumed.resumed_from == 3 and resumed.iterations == 7
    np.testing.assert_array_equal(resumed.centroids, full.centroids)
    np.testing.assert_array_equal(resumed.objective, full.objective)
    assert resumed.splits == full.splits
    again = fit(data, 14, niter=7, seed=1, state_file=checkpoint, **QUIET)
    assert again.resumed_from == 7 and not again.iteration_seconds.any()
    np.testing.assert_array_equal(again.centroids, full.centroids)


def test_extending_a_finished_run(tmp_path, x):
    checkpoint = tmp_path / "c.npz"
    fit(x, 24, niter=2, seed=3, state_file=checkpoint, **QUIET)
    longer = fit(x, 24, niter=5, seed=3, state_file=checkpoint, **QUIET)
    np.testing.assert_array_equal(longer.centroids, fit(x, 24, niter=5, seed=3, **QUIET).centroids)
    assert longer.resumed_from == 2


def test_checkpoint_of_another_run_is_refused(tmp_path, x):
    checkpoint = tmp_path / "c.npz"
    fit(x, 24, niter=1, seed=3, state_file=checkpoint, **QUIET)
    with pytest.raises(ValueError, match="another run"):
        fit(x, 20, niter=2, seed=3, state_file=checkpoint, **QUIET)
    with pytest.raises(ValueError, match="another run"):
        fit(x[:2000], 24, niter=2, seed=3, state_file=checkpoint, **QUIET)
    checkpoint.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        fit(x, 24, niter=2, seed=3, state_file=checkpoint, **QUIET)


def test_out_of_core_shards_equal_in_memory(tmp_path, x):
    """All vectors streamed from .npy shards (chunks spanning shard boundaries) = one array."""
    paths = write_shards(tmp_path, x, [700, 1, 1299, 1000])
    options = dict(niter=4, seed=5, max_points_per_centroid=None, chunk_size=512, **QUIET)
    from_disk = fit(paths, 24, **options)
    from_dir = fit(tmp_path, 24, **options)
    in_memory = fit(x, 24, **options)
    np.testing.assert_array_equal(from_disk.centroids, in_memory.centroids)
    np.testing.assert_array_equal(from_dir.centroids, in_memory.centroids)
    np.testing.assert_array_equal(from_disk.objective, in_memory.objective)


def test_sampling_across_shards(tmp_path, x):
    """A uniform sample over the global row numbering: the same rows from shards or one array."""
    paths = write_shards(tmp_path, x, [1000, 500, 1500], dtype=np.float16)
    options = dict(niter=3, seed=6, sample_size=1200, chunk_size=256, **QUIET)
    sampled = fit(paths, 24, **options)
    reference = fit(x.astype(np.float16).astype(np.float32), 24, **options)
    assert sampled.n_train == 1200 and sampled.n_total == 3000
    np.testing.assert_array_equal(sampled.centroids, reference.centroids)
    rule = fit(x, 4, niter=1, max_points_per_centroid=100, **QUIET)
    assert rule.n_train == 400


def test_stream_input(x):
    """An iterator is reservoir-sampled; when it fits in the sample it equals the array input."""
    options = dict(niter=3, seed=8, **QUIET)
    streamed = fit(iter(np.array_split(x, 7)), 24, **options)
    np.testing.assert_array_equal(streamed.centroids, fit(x, 24, **options).centroids)
    sampled = fit((block for block in np.array_split(x, 5)), 24, sample_size=1000, **options)
    assert sampled.n_train == 1000 and sampled.n_total == 3000


def test_reservoir_sample_is_uniform():
    rows = np.arange(10000, dtype=np.float32)[:, None]
    hits = np.zeros(10, dtype=np.int64)
    for seed in range(300):
        sample, seen = reservoir_sample(np.array_split(rows, 9), 1000, np.random.default_rng(seed))
        assert seen == 10000 and len(np.unique(sample)) == 1000
        hits += np.bincount((sample[:, 0] // 1000).astype(np.int64), minlength=10)
    np.testing.assert_allclose(hits, 30000, rtol=0.03)


def test_empty_clusters_are_split():
    data = np.repeat(blobs(10, 10, 6, seed=9), 30, axis=0)
    result = fit(data, 13, niter=8, seed=0, init="random", **QUIET)
    assert result.splits > 0 and np.isfinite(result.centroids).all()
    assert result.counts.sum() == len(data)
    assert len(np.unique(result.centroids, axis=0)) == 13
    assert result.objective[-1] <= 1e-4 * result.objective[0]  # left: the ±1/1024 offsets of split pairs


def test_kmeans_plusplus_seeds_every_blob():
    data = blobs(2000, 12, 8, seed=3, spread=30.0)
    centers = kmeans_plusplus(data, 12, np.random.default_rng(0))
    truth = np.random.default_rng(3).standard_normal((12, 8)) * 30.0
    nearest = assign(centers, truth.astype(np.float32))[0]
    assert sorted(nearest) == list(range(12))
    assert {tuple(r) for r in centers} <= {tuple(r) for r in data}
    np.testing.assert_array_equal(centers, kmeans_plusplus(data, 12, np.random.default_rng(0)))


def test_codebook_files(tmp_path):
    codebook = np.random.default_rng(0).standard_normal((8, 768)).astype(np.float32)
    written = save_codebook(codebook, tmp_path / "out")
    assert written == tmp_path / "out" / "codebook_4_0.npy"
    np.testing.assert_array_equal(load_codebook(written), codebook)
    assert codebook_filename(16384) == "codebook_8192_0.npy"
    path = official_codebook_path(tmp_path, 4096, 768)
    assert path == tmp_path / "codebook_idx" / "combine_512_audioset_dominate" / "codebook_2048_0.npy"
    assert official_codebook_path(tmp_path, 32768, 3072).parent.name == "combine_128_audioset_dominate"
    explicit = save_codebook(codebook.astype(np.float64), tmp_path / "book.npy")
    assert np.load(explicit).dtype == np.float32
    with pytest.raises(ValueError, match="even vocabulary"):
        codebook_filename(4095)
    with pytest.raises(ValueError, match="no official codebook set"):
        official_codebook_path(tmp_path, 4096, 100)
    with pytest.raises(ValueError, match="NaN"):
        save_codebook(np.full((2, 3), np.nan, dtype=np.float32), tmp_path / "nan.npy")


def test_bad_input(tmp_path, x):
    with pytest.raises(ValueError, match="k=3001 exceeds the number of vectors N=3000"):
        fit(x, 3001, **QUIET)
    with pytest.raises(ValueError, match="exceeds the number of vectors"):
        fit(iter([x[:10], x[10:20]]), 21, **QUIET)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        fit(x, 0, **QUIET)
    bad = x.copy()
    bad[1234, 5] = np.nan
    with pytest.raises(ValueError, match="row 1234 contains NaN"):
        fit(bad, 8, **QUIET)
    paths = write_shards(tmp_path, bad, [1000, 2000])
    with pytest.raises(ValueError, match=r"part_01\.npy: row 234 contains NaN"):
        fit(paths, 8, **QUIET)
    np.save(tmp_path / "narrow.npy", x[:50, :8])
    with pytest.raises(ValueError, match="mismatched dimensions"):
        fit([paths[0], tmp_path / "narrow.npy"], 8, **QUIET)
    with pytest.raises(ValueError, match="mismatched dimensions"):
        fit(iter([x[:100], x[:100, :8]]), 8, **QUIET)
    np.save(tmp_path / "empty.npy", np.zeros((0, 16), dtype=np.float32))
    with pytest.raises(ValueError, match=r"empty\.npy: the shard is empty"):
        fit([paths[0], tmp_path / "empty.npy"], 8, **QUIET)
    with pytest.raises(ValueError, match="the shard is empty"):
        fit(iter([x[:100], x[:0]]), 8, **QUIET)
    with pytest.raises(ValueError, match="stream of training vectors is empty"):
        fit(iter([]), 8, **QUIET)
    with pytest.raises(ValueError, match="no shards given"):
        fit([], 8, **QUIET)
    with pytest.raises(ValueError, match="no such shard file"):
        fit([tmp_path / "missing.npy"], 8, **QUIET)
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(ValueError, match="not a readable .npy file"):
        fit([tmp_path / "text.npy"], 8, **QUIET)
    with pytest.raises(ValueError, match="2-D array"):
        fit(x[0], 1, **QUIET)
    with pytest.raises(ValueError, match="floating point"):
        fit(x.astype(np.int32), 8, **QUIET)
    with pytest.raises(ValueError, match="smaller than k"):
        fit(x, 8, sample_size=5, **QUIET)
    with pytest.raises(ValueError, match="niter must be a positive integer"):
        fit(x, 8, niter=0, **QUIET)
    with pytest.raises(ValueError, match="init must be"):
        KMeansConfig(init="kmeans||")
    with pytest.raises(ValueError, match="unknown option"):
        fit(x, 8, n_iter=3, **QUIET)
    with pytest.raises(ValueError, match="unknown engine"):
        fit(x, 8, engine="cuda", **QUIET)
    with pytest.raises(ValueError, match="reservoir-sampled"):
        fit(iter([x]), 8, max_points_per_centroid=None, **QUIET)
    with pytest.raises(ValueError, match="torch.distributed is not initialised"):
        fit(x, 8, distributed=True, **QUIET)


def test_gpu_engines_never_fall_back_silently(monkeypatch):
    """Asking for an unavailable GPU engine is an error; auto reports what it chose and why."""
    import faiss
    import torch

    import semanticodec.kmeans.engines as engines

    if torch.cuda.is_available() or engines.faiss_gpu_count() > 0:
        pytest.skip("GPUs are visible here")
    with pytest.raises(ValueError, match="faiss-gpu"):
        select_engine("faiss-gpu")
    with pytest.raises(ValueError, match="torch-cuda"):
        select_engine("torch-cuda")
    auto = select_engine()
    assert auto.description.startswith("faiss-cpu") and "no GPU visible" in auto.description
    assert f"{faiss.omp_get_max_threads()} threads" in auto.description
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cuda = select_engine()
    assert cuda.description.startswith("torch-cuda (cuda:0") and "FAISS sees no GPU" in cuda.description
    assert select_engine("auto", local_rank=3).torch_device == torch.device("cuda:3")


def test_torch_engines_work_without_faiss(monkeypatch, x):
    """A machine without FAISS (a GPU host with no wheel for it) trains with a torch engine."""
    import torch

    import semanticodec.kmeans.engines as engines

    monkeypatch.setattr(engines, "faiss", None)
    with pytest.raises(ValueError, match="FAISS is not installed"):
        select_engine("faiss-cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    auto = select_engine()
    assert auto.description.startswith("torch-cpu") and "FAISS is not installed" in auto.description
    result = fit(x, 8, niter=3, seed=0, **QUIET)
    assert result.centroids.shape == (8, x.shape[1]) and np.isfinite(result.centroids).all()


def test_old_names_still_work_with_a_deprecation_warning() -> None:
    from semanticodec import kmeans

    x = blobs(400, 4, 3, seed=5)
    with pytest.warns(DeprecationWarning, match="kmeans.fit"):
        old = kmeans.train(x, 4, niter=2, seed=0, **QUIET)
    np.testing.assert_array_equal(old.centroids, fit(x, 4, niter=2, seed=0, **QUIET).centroids)
    with pytest.warns(DeprecationWarning, match="KMeansConfig"):
        assert kmeans.TrainConfig is KMeansConfig
