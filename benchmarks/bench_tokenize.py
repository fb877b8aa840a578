"""Corpus tokenization: throughput (audio hours per hour), peak memory, dataset size per hour.

Every measurement (after a 1 s warm-up encode) runs ``semanticodec.corpus.tokenize_corpus`` in a fresh child process (so
its peak RSS is its own) on a corpus written into a temporary folder:

- tiny model (the test architecture with tiny widths and random weights; NOT the real
  model's speed) for every token rate and vocabulary, on synthetic noise clips;
- with ``--full``: the full-size official architecture with deterministic ``fill`` weights
  (100 tok/s, V = 16384) on the LibriVox clips of ``../shared/audio/speech``.

Usage: ``python benchmarks/bench_tokenize.py [--clips 24] [--seconds 15] [--full]``; prints
Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "audio" / "speech"
RATES = (100, 50, 25)
VOCABS = (4096, 8192, 16384, 32768)


def _child(config: dict) -> dict:
    """Build the model, tokenize the corpus, report timings, sizes and peak RSS."""
    import torch

    torch.set_num_threads(config["threads"])
    sys.path.insert(0, str(ROOT / "tests"))
    from semanticodec.codec import SemantiCodec
    from semanticodec.corpus import list_corpus, tokenize_corpus

    if config["model"] == "tiny":
        from tiny import tiny_model

        model = tiny_model(config["token_rate"], config["vocab"])
    else:
        from benchmarks.fill import fill, fill_module
        from semanticodec.config import ModelConfig
        from semanticodec.model import SemantiCodecModel

        model_config = ModelConfig.official(config["token_rate"], config["vocab"])
        model = SemantiCodecModel(model_config, fill("semantic_codebook", (config["vocab"], model_config.feature_dim)))
        fill_module(model, "bench/", skip=("semantic.codebook",))
        model.eval()
    codec = SemantiCodec(model, device="cpu", batch_size=config["batch_size"])
    codec.encode(np.zeros(16000, np.float32), sample_rate=16000)  # warm-up: first-call allocations
    files = list_corpus(config["corpus"])
    start = time.perf_counter()
    report = tokenize_corpus(codec, files, config["out"], progress=False)
    wall = time.perf_counter() - start
    out = Path(config["out"])
    return {
        "files": report.encoded,
        "audio_s": report.audio_seconds,
        "wall_s": wall,
        "shard_bytes": sum(p.stat().st_size for p in out.glob("shard_*.npy")),
        "total_bytes": sum(p.stat().st_size for p in out.iterdir() if p.is_file()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _run(config: dict) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _noise_corpus(folder: Path, clips: int, seconds: float) -> None:
    import soundfile as sf

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(clips):
        sf.write(folder / f"clip{i:03d}.wav", (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--clips", type=int, default=24, help="synthetic clips for the tiny model (default 24)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per synthetic clip (default 15)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--full", action="store_true", help="also the full-size encoder on ../shared/audio/speech")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "noise"
        _noise_corpus(corpus, args.clips, args.seconds)
        print(f"Tiny model, {args.clips} clips x {args.seconds:g} s of noise, batch size 4, {args.threads} threads\n")
        print("| token rate | V | audio (h) | wall (s) | audio h / h | peak RSS (MB) | shards (kB / audio h) | dataset (kB / audio h) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for rate in RATES:
            for vocab in VOCABS:
                out = Path(tmp) / f"ds_{rate}_{vocab}"
                r = _run({"model": "tiny", "token_rate": rate, "vocab": vocab, "corpus": str(corpus), "out": str(out),
                          "batch_size": 4, "threads": args.threads})
                hours = r["audio_s"] / 3600
                print(f"| {rate} | {vocab} | {hours:.3f} | {r['wall_s']:.1f} | {r['audio_s'] / r['wall_s']:.0f} | "
                      f"{r['peak_rss_mb']:.0f} | {r['shard_bytes'] / hours / 1000:.0f} | {r['total_bytes'] / hours / 1000:.0f} |",
                      flush=True)
        if args.full:
            if not SPEECH.is_dir():
                raise SystemExit(f"{SPEECH} is missing")
            speech = Path(tmp) / "speech"
            speech.mkdir()
            for path in sorted(SPEECH.glob("sense_and_sensibility_*.wav")):
                (speech / path.name).symlink_to(path)
            out = Path(tmp) / "ds_full"
            r = _run({"model": "full", "token_rate": 100, "vocab": 16384, "corpus": str(speech), "out": str(out),
                      "batch_size": 4, "threads": args.threads})
            print(f"\nFull-size encoder (100 tok/s, V = 16384, fill weights), {r['files']} LibriVox clips, "
                  f"{r['audio_s']:.1f} s of audio, batch size 4, {args.threads} threads: {r['wall_s']:.1f} s wall, "
                  f"{r['audio_s'] / r['wall_s']:.2f} audio h / h, peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
