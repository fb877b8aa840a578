"""Encode and decode speed on a GPU: precisions (float32, bfloat16 / float16 autocast) and batched windows.

    python -m benchmarks.bench_gpu                            # CUDA, official 100 tok/s architecture, about 3 minutes
    python -m benchmarks.bench_gpu --tiny --device cpu        # seconds: a smoke test of the script itself

Weights are the deterministic ``benchmarks.fill`` values (every op is dense, so the cost is
that of the real checkpoints), or with ``--tiny`` a randomly initialised small model. The
audio is noise; each setting encodes and decodes it once after a warm-up. Real-time factor =
compute seconds / audio seconds (below 1: faster than real time). Encoding always runs in
float32 (token ids must not depend on the precision); the decoder runs under autocast to
the precision shown. Prints a Markdown table for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from semanticodec.codec import SemantiCodec
from semanticodec.config import ModelConfig
from semanticodec.model import SemantiCodecModel


def build(tiny: bool) -> SemantiCodecModel:
    """The official 100 tok/s architecture with fill weights, or (``tiny``) the small model with random ones."""
    if tiny:
        torch.manual_seed(0)
        return SemantiCodecModel(ModelConfig.small()).eval()
    from benchmarks.bench_codec import build as build_official

    return build_official(100, 16384)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn):
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, cpu")
    parser.add_argument("--tiny", action="store_true", help="a small randomly initialised model (for a CPU smoke test)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length (default 60 s: 7 decode windows)")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="windows per forward pass")
    parser.add_argument(
        "--decode", nargs="+", default=["ddim:50", "dpmpp-2m:3"], metavar="SAMPLER:STEPS", help="decode settings to time"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: pass --device cpu (with --tiny for a quick run)", file=sys.stderr)
        return 2
    settings = []
    for item in args.decode:
        sampler, _, steps = item.partition(":")
        settings.append((sampler, int(steps)))
    began = time.perf_counter()
    model = build(args.tiny)
    print(f"model built in {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    audio = (0.1 * np.random.default_rng(0).standard_normal(int(args.seconds * 16000))).astype(np.float32)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows = []
    codec = None
    for batch in args.batch_sizes:
        codec = SemantiCodec(model, device=device, seed=0, batch_size=batch)
        codec.encode(audio[:16000], 16000)  # warm-up (cuDNN autotuning, allocator)
        encode_s, encoded = timed(device, lambda: codec.encode(audio, 16000))
        for precision in args.precisions:
            for sampler, steps in settings:
                codec = SemantiCodec(
                    model, device=device, seed=0, batch_size=batch, sampler=sampler, steps=steps, precision=precision
                )
                codec.decode(encoded.tokens[:64])  # warm-up of this precision's kernels
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                decode_s, _ = timed(device, lambda: codec.decode(encoded))
                peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
                rows.append((precision, batch, f"{sampler} {steps}", encode_s / args.seconds, decode_s / args.seconds, peak))
                print(f"{rows[-1]}", file=sys.stderr, flush=True)
    print(f"{name}, torch {torch.__version__}, {'tiny model' if args.tiny else 'official 100 tok/s architecture'}, "
          f"{args.seconds:g} s of audio, {time.perf_counter() - began:.0f} s in all")
    print()
    print("| decoder precision | windows per batch | decode setting | encode RTF (float32) | decode RTF | peak GPU memory GiB |")
    print("|---|---:|---|---:|---:|---:|")
    for precision, batch, setting, enc, dec, peak in rows:
        print(f"| {precision} | {batch} | {setting} | {enc:.4f} | {dec:.4f} | {peak:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
