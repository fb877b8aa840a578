"""Convolutions of the official HiFi-GAN under bfloat16 autocast: ``conv1d`` (channels first)
against the channels-last 2-D form that ``semanticodec.nn.fastconv`` uses, alone and in the
whole vocoder (``fill`` weights, one 1024-frame window, rounds alternating, wall seconds).

    python -m benchmarks.bench_mixed_conv --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.fill import fill_module
from semanticodec.nn import fastconv
from semanticodec.nn.hifigan import HiFiGAN, HiFiGANConfig

SHAPES = ((512, 2048, 7), (256, 8192, 11), (128, 32768, 7), (64, 65536, 3))
"""(channels, length, taps) of the HiFi-GAN's stages over one window."""


def seconds(fn: Callable[[], object], rounds: int) -> float:
    """Median wall seconds of ``fn`` over ``rounds`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per variant")
    args = parser.parse_args()
    vocoder = HiFiGAN(HiFiGANConfig()).eval()
    fill_module(vocoder)
    torch.set_num_threads(args.threads)  # after fill: numba resets the OpenMP thread count
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.rounds} calls (ms)\n")
    print("| channels × length, taps | float32 conv1d | bfloat16 conv1d | bfloat16 channels-last conv2d |")
    print("|---|---:|---:|---:|")
    for channels, length, taps in SHAPES:
        x, w = torch.randn(1, channels, length), torch.randn(channels, channels, taps) * 0.01
        xb, wb = x.bfloat16(), w.bfloat16()
        x2 = xb.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        w2 = wb.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        row = [
            seconds(lambda: F.conv1d(x, w, padding=taps // 2), args.rounds),
            seconds(lambda: F.conv1d(xb, wb, padding=taps // 2), args.rounds),
            seconds(lambda: F.conv2d(x2, w2, padding=(0, taps // 2)), args.rounds),
        ]
        print(f"| {channels} × {length}, {taps} | " + " | ".join(f"{1000 * t:.0f}" for t in row) + " |")

    mel = torch.randn(1, 64, 1024) * 2 - 4

    def mixed() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return vocoder(mel)

    def channels_first() -> torch.Tensor:
        with fastconv.direct():  # plain conv1d under autocast
            return mixed()

    mixed(), channels_first()
    rounds: dict[str, list[float]] = {"bfloat16 conv1d": [], "bfloat16 channels-last": []}
    for _ in range(args.rounds):
        for name, fn in zip(rounds, (channels_first, mixed)):
            start = time.perf_counter()
            fn()
            rounds[name].append(time.perf_counter() - start)
    print("\nwhole HiFi-GAN, one 1024-frame window (s): " + "; ".join(
        f"{name} {' / '.join(f'{t:.2f}' for t in times)}" for name, times in rounds.items()
    ))


if __name__ == "__main__":
    main()
