"""Data-parallel k-means: 2 CPU processes (torchrun, gloo) give the codebook of 1 process."""

from __future__ import annotations

import os
import subprocess
import sys

import faiss
import numpy as np
import pytest
import torch

from semanticodec.kmeans.cli import main


def torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone`` (free localhost port) of ``python -m semanticodec.kmeans train ARGS``, one thread each."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command += ["-m", "semanticodec.kmeans", "train", *args, "--engine", "faiss-cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def single_process(args: list[str]) -> None:
    """The same command in this process, with one thread as in the torchrun workers."""
    threads, omp = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    try:
        assert main(["train", *args, "--engine", "faiss-cpu", "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(omp)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """1900 vectors in 3 shards: 1500 from 24 blobs, then 400 copies of 40 distinct points.

    With ``--init random`` two initial centroids can be copies of one point, so clusters are
    empty and get split (the split random state must stay in step across ranks).
    """
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((24, 16)) * 3
    blobs = (centers[rng.integers(0, 24, 1500)] + rng.standard_normal((1500, 16))).astype(np.float32)
    points = rng.standard_normal((40, 16)).astype(np.float32) * 30
    x = np.concatenate([blobs, points[rng.integers(0, 40, 400)]])
    root = tmp_path_factory.mktemp("shards")
    for i, part in enumerate(np.array_split(x, [600, 1300])):
        np.save(root / f"shard_{i}.npy", part)
    return root


@pytest.mark.parametrize(
    "sampling",
    [["--sample-size", "1000"], ["--all-points"]],
    ids=["sampled", "all-points"],
)
def test_two_processes_equal_one(shard_dir, tmp_path, sampling):
    common = [str(shard_dir), "--semantic-vocab-size", "48", "--seed", "3", "--init", "random", "--chunk-size", "128", *sampling]
    one, two = tmp_path / "one.npy", tmp_path / "two.npy"
    done = torchrun([*common, "--niter", "3", "--output", str(two)])
    assert done.stdout.count("float32") == 1, "only rank 0 reports and writes"
    single_process([*common, "--niter", "3", "--output", str(one)])
    np.testing.assert_array_equal(np.load(two), np.load(one))
    with np.load(tmp_path / "two.npy.ckpt.npz") as a, np.load(tmp_path / "one.npy.ckpt.npz") as b:
        assert int(a["iteration"]) == 3 and int(a["splits"]) > 0
        np.testing.assert_array_equal(a["objective"], b["objective"])
        np.testing.assert_array_equal(a["counts"], b["counts"])
    if "--all-points" in sampling:
        return
    torchrun([*common, "--niter", "6", "--output", str(two)])
    single_process([*common, "--niter", "6", "--output", str(one)])
    np.testing.assert_array_equal(np.load(two), np.load(one))
    with np.load(tmp_path / "two.npy.ckpt.npz") as a:
        assert int(a["iteration"]) == 6
