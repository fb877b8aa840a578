"""k-means benchmarks: engines at equal iterations, the sgemm floor, and scaling in N and k.

    python benchmarks/bench_kmeans.py engines [--n 100000 --dim 768 --semantic-vocab-size 4096 --iters 3]
    python benchmarks/bench_kmeans.py scale-n [--sizes 50000,100000,200000,500000,1000000 --semantic-vocab-size 1024]
    python benchmarks/bench_kmeans.py scale-k [--n 65536 --semantic-vocab-sizes 1024,4096,16384,32768]
    python benchmarks/bench_kmeans.py gpu     [--n 1000000 --semantic-vocab-size 16384]   (needs a GPU)

The number of centroids k is the semantic vocabulary size (``--k`` and ``--ks`` are the
deprecated spellings of ``--semantic-vocab-size`` and ``--semantic-vocab-sizes``).

Each command prints a Markdown table. Data are a seeded Gaussian mixture (2048 centres,
unit noise) in float32. Every engine starts from k random training vectors (FAISS's
initialisation) so that iterations are comparable; the objective reported is the mean squared
distance of all vectors to their nearest final centroid, computed the same way for all.
``scale-n`` / ``scale-k`` run each point in a fresh process that streams the vectors from
``.npy`` shards on disk (all points, no sampling) and report its peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from semanticodec.commands import deprecated_alias
from semanticodec.kmeans import assign, fit

MIXTURE_CENTRES = 2048


def mixture(n: int, dim: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """Rows ``start .. start + n`` of a fixed float32 Gaussian mixture (same rows for any split)."""
    centres = np.random.default_rng(seed).standard_normal((MIXTURE_CENTRES, dim)).astype(np.float32) * 2.0
    out = np.empty((n, dim), dtype=np.float32)
    for block in range(start // 65536, -(-(start + n) // 65536)):
        rng = np.random.default_rng([seed, block])
        rows = centres[rng.integers(0, MIXTURE_CENTRES, 65536)] + rng.standard_normal((65536, dim), dtype=np.float32)
        a, b = max(start, block * 65536), min(start + n, (block + 1) * 65536)
        out[a - start : b - start] = rows[a - block * 65536 : b - block * 65536]
    return out


def mean_objective(x: np.ndarray, centroids: np.ndarray) -> float:
    return float(assign(x, centroids, batch_size=8192, engine="faiss")[1].astype(np.float64).mean())


def sgemm_gflops(x: np.ndarray, k: int, rows: int = 8192) -> float:
    """Achieved GFLOP/s of torch's sgemm on ``x [N, D] @ C.T [D, k]`` in blocks of ``rows``."""
    xt = torch.from_numpy(x)
    c = torch.from_numpy(x[:k].copy())
    best = np.inf
    for _ in range(2):
        start = time.perf_counter()
        for a in range(0, len(xt), rows):
            torch.mm(xt[a : a + rows], c.T)
        best = min(best, time.perf_counter() - start)
    return 2.0 * len(x) * k * x.shape[1] / best / 1e9


def torch_lloyd(x: np.ndarray, k: int, iters: int, seed: int, rows: int = 4096) -> tuple[np.ndarray, list[float]]:
    """Plain torch Lloyd in the style of kmeans_pytorch (random init, full pairwise argmin, mean of
    each cluster through index_select in a Python loop), with matmul distances in row blocks."""
    xt = torch.from_numpy(x)
    generator = torch.Generator().manual_seed(seed)
    c = xt[torch.randperm(len(xt), generator=generator)[:k]].clone()
    seconds = []
    for _ in range(iters):
        start = time.perf_counter()
        c_sq = (c * c).sum(1)
        ids = torch.cat([(c_sq - 2.0 * xt[a : a + rows] @ c.T).argmin(1) for a in range(0, len(xt), rows)])
        for j in range(k):
            selected = torch.nonzero(ids == j).squeeze(1)
            if len(selected):
                c[j] = xt.index_select(0, selected).mean(0)
        seconds.append(time.perf_counter() - start)
    return c.numpy(), seconds


def broadcast_seconds_per_row(x: np.ndarray, k: int, rows: int, block: int = 8) -> float:
    """Seconds per vector of kmeans_pytorch's distance ((x[:, None] - c[None]) ** 2).sum(-1) + argmin."""
    xt = torch.from_numpy(x[:rows])
    c = torch.from_numpy(x[-k:].copy())
    start = time.perf_counter()
    for a in range(0, rows, block):
        ((xt[a : a + block, None, :] - c[None]) ** 2).sum(-1).argmin(1)
    return (time.perf_counter() - start) / rows


def cmd_engines(args: argparse.Namespace) -> None:
    from sklearn.cluster import MiniBatchKMeans

    n, dim, k, iters = args.n, args.dim, args.semantic_vocab_size, args.iters
    load_before = os.getloadavg()[0]
    x = mixture(n, dim)
    flops = 2.0 * n * k * dim
    rows = []

    def add(name: str, per_iter: float, objective: float | None, note: str = "") -> None:
        rows.append((name, per_iter, flops / per_iter / 1e9, objective, note))
        print(f"  {name}: {per_iter:.2f} s/iter", file=sys.stderr)

    gemm = sgemm_gflops(x, k)
    for engine in ("faiss-cpu", "torch-cpu"):
        r = fit(x, k, niter=iters, seed=0, init="random", max_points_per_centroid=None, engine=engine, progress=False)
        add(f"kmeans.fit, engine {engine}", float(np.median(r.iteration_seconds)), mean_objective(x, r.centroids))

    km = faiss.Kmeans(dim, k, niter=iters, seed=0, max_points_per_centroid=n, verbose=False)
    start = time.perf_counter()
    km.train(x)
    add("faiss.Kmeans (FAISS's own loop)", (time.perf_counter() - start) / iters, mean_objective(x, km.centroids))

    mbk = MiniBatchKMeans(k, init="random", n_init=1, max_iter=iters, batch_size=16384, tol=0.0,
                          max_no_improvement=None, compute_labels=False, random_state=0)
    start = time.perf_counter()
    mbk.fit(x)
    epochs = mbk.n_steps_ * 16384 / n
    add("scikit-learn MiniBatchKMeans (batch 16384)", (time.perf_counter() - start) / epochs,
        mean_objective(x, mbk.cluster_centers_.astype(np.float32)), f"{mbk.n_steps_} steps = {epochs:.2f} epochs")

    centroids, seconds = torch_lloyd(x, k, iters, seed=0)
    add("plain torch Lloyd (kmeans_pytorch structure, matmul distances)", float(np.median(seconds)), mean_objective(x, centroids))

    per_row = broadcast_seconds_per_row(x, k, rows=args.broadcast_rows)
    add("kmeans_pytorch broadcast distance only", per_row * n, None,
        f"measured on {args.broadcast_rows} vectors, scaled linearly to N={n}; needs N*k*D*4 bytes unchunked")

    print(f"\nN={n}, D={dim}, k={k}, {iters} iterations, torch threads {torch.get_num_threads()}, "
          f"FAISS threads {faiss.omp_get_max_threads()}; 2*N*k*D = {flops / 1e9:.0f} GFLOP per iteration; "
          f"sgemm of the same size: {gemm:.1f} GFLOP/s; machine load (1-min average) {load_before:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end\n")
    print("| implementation | s / iteration | GFLOP/s | % of sgemm | final objective (mean sq. dist.) | note |")
    print("|---|---:|---:|---:|---:|---|")
    for name, per_iter, gf, objective, note in rows:
        obj = f"{objective:.4f}" if objective is not None else "n/a"
        print(f"| {name} | {per_iter:.2f} | {gf:.1f} | {100 * gf / gemm:.0f} % | {obj} | {note} |")


def write_shards(root: Path, n: int, dim: int, shard_rows: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, start in enumerate(range(0, n, shard_rows)):
        path = root / f"shard_{i:04d}.npy"
        rows = min(shard_rows, n - start)
        if not path.exists() or np.load(path, mmap_mode="r", allow_pickle=False).shape != (rows, dim):
            np.save(path, mixture(rows, dim, start=start))
        paths.append(path)
    return paths


def cmd_point(args: argparse.Namespace) -> None:
    """One scaling point in this process: JSON with seconds per iteration and peak RSS."""
    paths = sorted(Path(args.shards).glob("shard_*.npy"))[: args.shard_count]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    r = fit(paths, args.semantic_vocab_size, niter=args.iters, seed=0, init="random", max_points_per_centroid=None,
              chunk_size=65536, engine=args.engine, progress=False)
    total = time.perf_counter() - start
    print(json.dumps({
        "n": r.n_train, "k": args.semantic_vocab_size, "seconds_per_iteration": float(np.median(r.iteration_seconds)),
        "total_seconds": total, "objective": float(r.objective[-1] / r.n_train),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "engine": r.engine,
        "load": [load_before, os.getloadavg()[0]],
    }))


def run_point(shards: Path, shard_count: int, k: int, iters: int, engine: str) -> dict:
    command = [sys.executable, __file__, "point", "--shards", str(shards), "--shard-count", str(shard_count),
               "--semantic-vocab-size", str(k), "--iters", str(iters), "--engine", engine]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling_table(points: list[dict], dim: int) -> None:
    print("| N | k | s / iteration | µs per vector·iteration | GFLOP/s | peak RSS (MB) | data on disk (MB) | machine load (1-min avg, start → end) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in points:
        gf = 2.0 * p["n"] * p["k"] * dim / p["seconds_per_iteration"] / 1e9
        print(f"| {p['n']} | {p['k']} | {p['seconds_per_iteration']:.2f} | {1e6 * p['seconds_per_iteration'] / p['n']:.1f} "
              f"| {gf:.1f} | {p['peak_rss_mb']:.0f} | {p['n'] * dim * 4 / 2**20:.0f} | {p['load'][0]:.1f} → {p['load'][1]:.1f} |")


def cmd_scale_n(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    unit = sizes[0]
    if any(s % unit for s in sizes):
        raise SystemExit("--sizes must be multiples of the first size (the shard size)")
    shards = Path(args.workdir) / f"mixture_{args.dim}_{unit}"
    write_shards(shards, max(sizes), args.dim, unit)
    points = []
    for n in sizes:
        points.append(run_point(shards, n // unit, args.semantic_vocab_size, args.iters, args.engine))
        print(f"  N={n}: {points[-1]['seconds_per_iteration']:.2f} s/iter, {points[-1]['peak_rss_mb']:.0f} MB", file=sys.stderr)
    print(f"\nD={args.dim}, k={args.semantic_vocab_size}, {args.iters} iterations per point, all vectors streamed from {unit}-row .npy shards, "
          f"engine {points[0]['engine']}\n")
    scaling_table(points, args.dim)


def cmd_scale_k(args: argparse.Namespace) -> None:
    ks = [int(s) for s in args.semantic_vocab_sizes.split(",")]
    shards = Path(args.workdir) / f"mixture_{args.dim}_{args.n}"
    write_shards(shards, args.n, args.dim, args.n)
    points = []
    for k in ks:
        points.append(run_point(shards, 1, k, args.iters, args.engine))
        print(f"  k={k}: {points[-1]['seconds_per_iteration']:.2f} s/iter, {points[-1]['peak_rss_mb']:.0f} MB", file=sys.stderr)
    print(f"\nN={args.n}, D={args.dim}, {args.iters} iterations per point, engine {points[0]['engine']}\n")
    scaling_table(points, args.dim)


def cmd_gpu(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: the GPU figure is not measured")
    x = mixture(args.n, args.dim)
    r = fit(x, args.semantic_vocab_size, niter=args.iters, seed=0, init="random", max_points_per_centroid=None, engine=args.engine, progress=False)
    per_iter = float(np.median(r.iteration_seconds))
    print(f"| {args.n} | {args.dim} | {args.semantic_vocab_size} | {r.engine} | {per_iter:.2f} | "
          f"{2.0 * args.n * args.semantic_vocab_size * args.dim / per_iter / 1e12:.1f} | {r.objective[-1] / args.n:.4f} |")


def _add_vocab_size(parser: argparse.ArgumentParser, **options) -> None:
    """``--semantic-vocab-size`` (k, the number of centroids), with ``--k`` its deprecated spelling
    (not for a required option: argparse would not count the old spelling as given)."""
    option = parser.add_argument("--semantic-vocab-size", type=int, metavar="K", help="centroids k (the semantic vocabulary size)", **options)
    if not option.required:
        deprecated_alias(parser, "--k", option)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the benchmark's commands."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("engines")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=768)
    _add_vocab_size(p, default=4096)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--broadcast-rows", type=int, default=1000)
    p.set_defaults(func=cmd_engines)
    for name, func in (("scale-n", cmd_scale_n), ("scale-k", cmd_scale_k)):
        p = sub.add_parser(name)
        p.add_argument("--dim", type=int, default=768)
        p.add_argument("--iters", type=int, default=2)
        p.add_argument("--engine", default="faiss-cpu")
        p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "kmeans_bench"))
        if name == "scale-n":
            p.add_argument("--sizes", default="50000,100000,200000,500000,1000000")
            _add_vocab_size(p, default=1024)
        else:
            p.add_argument("--n", type=int, default=65536)
            sizes = p.add_argument("--semantic-vocab-sizes", default="1024,4096,16384,32768", metavar="K,K,...", help="values of k")
            deprecated_alias(p, "--ks", sizes)
        p.set_defaults(func=func)
    p = sub.add_parser("point")
    p.add_argument("--shards", required=True)
    p.add_argument("--shard-count", type=int, required=True)
    _add_vocab_size(p, required=True)
    p.add_argument("--iters", type=int, required=True)
    p.add_argument("--engine", default="faiss-cpu")
    p.set_defaults(func=cmd_point)
    p = sub.add_parser("gpu")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=768)
    _add_vocab_size(p, default=16384)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--engine", default="auto")
    p.set_defaults(func=cmd_gpu)
    return parser


def main() -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    args = build_parser().parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
