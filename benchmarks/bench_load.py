"""Load time of official weights: first use, the converted file, and the official pickles.

    python -m benchmarks.bench_load [--token-rate 100] [--semantic-vocab-size 16384] [--repeats 2] [--compress-rss SECONDS] [--work DIR] [--write]

An official-layout repository of full size is written from the deterministic ``fill`` weights
(no official checkpoint can be fetched here) and served by the stand-in hub on 127.0.0.1
(:mod:`benchmarks.standin_hub`); each measurement then runs in a fresh process with its own
``HF_HOME``:

- ``first use``: :func:`semanticodec.weights.official_model` on an empty cache: fetch the three
  files, check their hashes, build the model from the pickles, write the converted file;
- ``converted``: the same call again, offline: the converted safetensors file is read;
- ``official pickles``: :func:`semanticodec.weights.load_official` on the repository folder
  (the load before the hub, ``torch.load(weights_only=True, mmap=True)`` of both checkpoints).

Times are wall clock of the call alone (imports excluded); the files were just written, but a
loaded machine's page cache may not hold them all; peak RSS is the process's. ``--compress-rss``
also measures the peak RSS of ``semanticodec compress`` processes (they load the encoder only)
with the weights from the converted file in the cache and from the official pickles. ``--write``
replaces the section in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Loading official weights"


def build_repository(root: Path, token_rate: int, vocab: int) -> None:
    """The three official files of (token rate, vocabulary) under ``root``, every entry ``fill(key, shape)``."""
    import numpy as np
    import torch

    from benchmarks.fill import fill
    from semanticodec.official import official_paths, official_schema

    encoder, decoder, codebook = (root / p for p in official_paths(token_rate, vocab))
    schema = official_schema(token_rate)
    for part, path in (("encoder", encoder), ("decoder", decoder)):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: torch.from_numpy(fill(k, s)) for k, s, _ in schema[part]}, path)
    codebook.parent.mkdir(parents=True, exist_ok=True)
    feature_dim = 768 * {100: 1, 50: 2, 25: 4}[token_rate]
    np.save(codebook, fill("semantic_codebook", (vocab, feature_dim)))


def measure(phase: str, repo: Path, token_rate: int, vocab: int) -> dict:
    """Run one phase in this process and return its timings (seconds) and peak RSS (MiB)."""
    from semanticodec import hub
    from semanticodec.weights import load_official, official_model, save_safetensors

    times: dict[str, float] = {}
    start = time.perf_counter()
    if phase == "first":
        files = hub.fetch(token_rate, vocab)
        times["fetch"] = time.perf_counter() - start
        hub.verify(token_rate, vocab, files)
        times["verify"] = time.perf_counter() - start - times["fetch"]
        model = load_official(files.encoder.parents[1], token_rate, vocab)
        times["build"] = time.perf_counter() - start - times["fetch"] - times["verify"]
        target = hub.converted_path(token_rate, vocab, files)
        target.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors(model, target, overwrite=True)
        times["write"] = time.perf_counter() - start - sum(times.values())
        times["converted_bytes"] = target.stat().st_size
    elif phase == "converted":
        model = official_model(token_rate, vocab, offline=True)
    else:
        model = load_official(repo, token_rate, vocab)
    times["total"] = time.perf_counter() - start
    assert model.config.token_rate == token_rate
    times["peak_rss_mib"] = peak_rss_mib()
    return times


def peak_rss_mib() -> float:
    """This process's peak RSS since it started (``VmHWM``; its ``ru_maxrss`` would also count
    the benchmark process it was started from)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def _child(phase: str, repo: Path, env: dict, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "benchmarks.bench_load", "--phase", phase, "--repo", str(repo),
               "--token-rate", str(args.token_rate), "--semantic-vocab-size", str(args.semantic_vocab_size)]
    out = subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> str:
    from benchmarks.report import cpu_model
    from benchmarks.standin_hub import StandInHub
    from semanticodec import released

    with tempfile.TemporaryDirectory(dir=args.work) as work:
        repo = Path(work) / "repo"
        built = time.perf_counter()
        build_repository(repo, args.token_rate, args.semantic_vocab_size)
        print(f"built the repository in {time.perf_counter() - built:.0f} s", file=sys.stderr)
        official_bytes = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
        rows = []
        with StandInHub(repo, released.REPO_ID, released.REVISION) as server:
            env = {**os.environ, "HF_HOME": str(Path(work) / "hf_home"), "HF_ENDPOINT": server.url,
                   "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
            env.pop("HF_HUB_CACHE", None)
            env.pop("SEMANTICODEC_CHECKPOINT", None)
            first = _child("first", repo, env, args)
            rows.append(("first use (fetch, verify, build, convert)", first))
            for _ in range(args.repeats):
                rows.append(("converted safetensors (offline)", _child("converted", repo, {**env, "HF_HUB_OFFLINE": "1"}, args)))
                rows.append(("official pickles (`load_official`)", _child("official", repo, env, args)))
            compress = []
            if args.compress_rss:
                from benchmarks.bench_codec import compress_rss

                config = ["--token-rate", str(args.token_rate), "--semantic-vocab-size", str(args.semantic_vocab_size)]
                for name, options in (("converted safetensors (cache, `--offline`)", ["--offline"]),
                                      ("official pickles (`--checkpoint` folder)", ["--checkpoint", str(repo)])):
                    compress.append((name, compress_rss(args.compress_rss, Path(work), config + options, {**env, "HF_HUB_OFFLINE": "1"})))
            heads = sum(r.method == "HEAD" for r in server.requests)
            gets = sum(r.method == "GET" for r in server.requests)
            resumed = sum(r.method == "GET" and r.range is not None for r in server.requests)

    def best(label: str) -> float:
        return min(r["total"] for name, r in rows if name == label)

    converted_s, old_s = best("converted safetensors (offline)"), best("official pickles (`load_official`)")
    lines = [
        SECTION,
        "",
        f"Command: `OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.bench_load --token-rate {args.token_rate} "
        f"--semantic-vocab-size {args.semantic_vocab_size} --repeats {args.repeats}` on {cpu_model()} (2 vCPUs, shared with training runs).",
        f"Official-layout files of {args.token_rate} tok/s, vocabulary {args.semantic_vocab_size} at full size from the `fill` weights: "
        f"{official_bytes / 1e9:.2f} GB in three files; converted float32 inference file: "
        f"{first['converted_bytes'] / 1e9:.2f} GB. Served by the stand-in hub on 127.0.0.1 ({heads} HEAD and {gets} GET requests, {resumed} of them resuming "
        "a cut transfer with a Range); "
        "each row is a fresh process; the files were just written (a loaded machine's page cache may not hold them).",
        "",
        "| load | seconds | peak RSS (MiB) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {r['total']:.1f} | {r['peak_rss_mib']:.0f} |" for name, r in rows]
    lines += [
        "",
        f"First use splits into fetch {first['fetch']:.1f} s (localhost), hash check {first['verify']:.1f} s, "
        f"model from the pickles {first['build']:.1f} s and writing the converted file {first['write']:.1f} s. "
        f"Converted load / official pickles: {converted_s:.1f} s / {old_s:.1f} s = {converted_s / old_s:.2f}x (best of {args.repeats}).",
        "",
    ]
    if compress:
        lines += [f"`semanticodec compress` of {args.compress_rss:g} s of noise (`--compress-rss {args.compress_rss:g}`; encoder only):", "",
                  "| weights | peak RSS (MiB) |", "|---|---:|"]
        lines += [f"| {name} | {rss:.0f} |" for name, rss in compress] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--token-rate", type=int, default=100, choices=(100, 50, 25))
    parser.add_argument("--semantic-vocab-size", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=2, help="converted and pickle loads, alternated (default 2)")
    parser.add_argument("--compress-rss", type=float, metavar="SECONDS", help="also measure compress processes on this much audio")
    parser.add_argument("--work", help="folder for the temporary repository and cache (default: the system's)")
    parser.add_argument("--write", action="store_true", help="replace the section in benchmarks/RESULTS.md")
    parser.add_argument("--phase", choices=("first", "converted", "official"), help=argparse.SUPPRESS)
    parser.add_argument("--repo", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(measure(args.phase, Path(args.repo), args.token_rate, args.semantic_vocab_size)))
        return 0
    section = run(args)
    print(section)
    if args.write:
        from benchmarks.report import replace_section

        results = ROOT / "benchmarks" / "RESULTS.md"
        results.write_text(replace_section(results.read_text(), section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
