"""Per-window decode time of the official 100 tok/s architecture, paired in one process.

Decodes one 10.24 s window of random tokens with each ``--decode`` setting (UNet sampling,
VAE decoder and vocoder: the whole of ``SemantiCodec.decode``), rounds alternating between
the settings so that a shared machine's load falls on all of them alike, and prints the
median seconds per window, the speed-up over the first setting and the per-stage split.
``--stages`` instead times the VAE decoder and the HiFi-GAN alone: float32 direct convolutions
(``fastconv.direct``), float32 with the inference shortcuts of ``semanticodec.nn.fastconv``, and
bfloat16 autocast (``--precision bfloat16``) without those shortcuts (plain channels-first
convolutions) and with them (channels-last), with its deviation from float32: fill weights, so
a numerical figure, not a quality one.
Weights are the deterministic ``benchmarks.fill`` values (every op is dense: the cost is that
of the real checkpoints).

    python -m benchmarks.bench_decode --decode ddim:50 dpmpp-2m:3 default --rounds 3   # the issue-17 ratio
    python -m benchmarks.bench_decode --stages --rounds 5 --threads 1 --clock cpu
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

import numpy as np
import torch

from benchmarks.bench_codec import CLOCK, DEFAULT_SETTING, TIMES, build, instrument, parse_setting
from benchmarks.report import cpu_model
from semanticodec.codec import SemantiCodec
from semanticodec.nn import fastconv


def decode_rounds(model, settings, rounds: int, clock) -> dict[str, list[tuple[float, dict[str, float]]]]:
    """``{label: [(seconds, stage split), ...]}``: one decode of one window per setting per round."""
    rng = np.random.default_rng(0)
    tokens = np.stack([rng.integers(0, model.config.semantic_vocab_size, 512),
                       rng.integers(0, model.config.acoustic_vocab_size, 512)], axis=-1)
    codecs = {f"{s} {n}" + ("" if p == "float32" else f" {p}"): SemantiCodec(
        model, device="cpu", sampler=s, steps=n, precision=p, seed=0) for s, n, p in settings}
    results: dict[str, list] = {label: [] for label in codecs}
    for codec in codecs.values():  # warm-up: first-call allocations and kernel choices
        SemantiCodec(model, device="cpu", sampler=codec.sampler, steps=1, precision=codec.precision, seed=0).decode(
            tokens[:8])
    for _ in range(rounds):
        for label, codec in codecs.items():
            TIMES.clear()
            start = clock()
            codec.decode(tokens)
            results[label].append((clock() - start, dict(TIMES)))
    return results


STAGE_VARIANTS = ("direct", "fast", "bfloat16 direct", "bfloat16")
"""``--stages`` variants: float32 direct convolutions (``fastconv.direct``), float32 with the
inference shortcuts, and bfloat16 autocast (``--precision bfloat16``) without and with them."""


def _variant(name: str) -> contextlib.AbstractContextManager:
    stack = contextlib.ExitStack()
    if name.endswith("direct"):
        stack.enter_context(fastconv.direct())
    if name.startswith("bfloat16"):
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
    return stack


def stage_rounds(model, rounds: int, clock) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds of the VAE decode and the vocoder of one window per :data:`STAGE_VARIANTS` entry,
    and each stage's relative L2 deviation of bfloat16 from float32 (fast) output."""
    latent = torch.randn(1, 8, 256, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        mel = model.vae.decode(latent)
        jobs = {"vae": lambda: model.vae.decode(latent), "vocoder": lambda: model.vocoder.mel_to_waveform(mel)}
        times: dict[str, list[float]] = {f"{s} {v}": [] for s in jobs for v in STAGE_VARIANTS}
        deviation = {}
        for stage, job in jobs.items():  # warm-up, and the bfloat16 deviation
            outputs = {}
            for variant in STAGE_VARIANTS:
                with _variant(variant):
                    outputs[variant] = job().float()
            deviation[stage] = float((outputs["bfloat16"] - outputs["fast"]).norm() / outputs["fast"].norm())
        for _ in range(rounds):
            for stage, job in jobs.items():
                for variant in STAGE_VARIANTS:
                    with _variant(variant):
                        start = clock()
                        job()
                        times[f"{stage} {variant}"].append(clock() - start)
    return times, deviation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decode", type=parse_setting, nargs="+", default=[("ddim", 50, "float32"), DEFAULT_SETTING],
                        metavar="SAMPLER:STEPS[:PRECISION] or default",
                        help="settings (default: the package default decoding); the first is the baseline of the speed-up")
    parser.add_argument("--stages", action="store_true", help="time the VAE and vocoder alone, fast against direct")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=sorted(CLOCK), default="wall",
                        help="cpu (with --threads 1): CPU seconds, less sensitive to a shared machine's load")
    args = parser.parse_args()
    clock = CLOCK[args.clock]
    model = build()
    torch.set_num_threads(args.threads)  # after build: numba's fill resets the OpenMP thread count
    print(f"machine: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"clock {args.clock}, {args.rounds} rounds, official 100 tok/s architecture, one 10.24 s window")
    if args.stages:
        times, deviation = stage_rounds(model, args.rounds, clock)
        print("\n| stage | direct s | fast s | speed-up | bfloat16 direct s | speed-up | bfloat16 s | speed-up | "
              "bfloat16 rel. L2 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for stage in ("vae", "vocoder"):
            slow, fast, half_direct, half = (statistics.median(times[f"{stage} {v}"]) for v in STAGE_VARIANTS)
            print(f"| {stage} | {slow:.2f} | {fast:.2f} | {slow / fast:.2f}× | {half_direct:.2f} | {slow / half_direct:.2f}× "
                  f"| {half:.2f} | {slow / half:.2f}× | {deviation[stage]:.1e} |")
        return
    instrument(model)
    results = decode_rounds(model, args.decode, args.rounds, clock)
    print("\n| setting | s / window (median) | all rounds | speed-up | split (s, median round) |\n|---|---:|---|---:|---|")
    base = None
    for label, runs in results.items():
        seconds = [s for s, _ in runs]
        median = statistics.median(seconds)
        base = base or median
        split = min(runs, key=lambda run: abs(run[0] - median))[1]
        parts = ", ".join(f"{k} {v:.2f}" for k, v in split.items())
        print(f"| {label} | {median:.2f} | {', '.join(f'{s:.1f}' for s in seconds)} | {base / median:.2f}× | {parts} |")


if __name__ == "__main__":
    main()
