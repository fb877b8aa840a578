"""Encode and decode speed of the full-size model (token rate 100) on this machine.

Weights are the deterministic ``benchmarks.fill`` values (every op is dense, so the cost is
that of the real checkpoints). Prints a Markdown table of real-time factors (compute seconds
per second of audio), the process's CPU seconds (all threads; on a machine shared with other
jobs they show the work where wall time shows the load), the decode speed-up of each setting
over the first (50-step DDIM) and where the time goes, to paste into ``benchmarks/RESULTS.md``; ``--compress-rss`` also runs a
``semanticodec compress`` process with these weights and reports its peak memory (with
``--durations`` given no value, that alone).

    python -m benchmarks.bench_codec --durations 60 --decode ddim:50 dpmpp-2m:3 --compress-rss 20.48
    python -m benchmarks.bench_codec --durations --compress-rss 20.48   # compress memory only
    python -m benchmarks.bench_codec --durations 10.24 --decode dpmpp-2m:3 --threads 1 --split-clock cpu   # a busy machine
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks.fill import fill, fill_module
from benchmarks.report import cpu_model
from semanticodec.codec import SemantiCodec, native_bfloat16
from semanticodec.commands import deprecated_alias
from semanticodec.config import ModelConfig
from semanticodec.constants import WINDOW_SAMPLES
from semanticodec.model import SemantiCodecModel
from semanticodec.nn.vit import audiomae_pos_embed
from semanticodec.weights import BUNDLED_PRECISION, BUNDLED_SAMPLING, save_safetensors
from semanticodec.windows import split_windows

TIMES: dict[str, float] = defaultdict(float)
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter
"""The clock of the per-stage split (``--split-clock``)."""


@contextmanager
def timed(name: str):
    start = clock()
    yield
    TIMES[name] += clock() - start


def instrument(model: SemantiCodecModel) -> None:
    """Accumulate the wall time of each stage's forward in TIMES."""
    stages = {
        "audiomae": (model.audiomae, "forward"),
        "lstm": (model.acoustic, "project"),
        "unet": (model.unet, "forward"),
        "vae": (model.vae, "decode"),
        "vocoder": (model.vocoder, "forward"),
    }
    for name, (module, method) in stages.items():
        original = getattr(module, method)

        def wrapped(*args, _original=original, _name=name, **kwargs):
            with timed(_name):
                return _original(*args, **kwargs)

        setattr(module, method, wrapped)


def build(token_rate: int = 100, vocab: int = 16384) -> SemantiCodecModel:
    config = ModelConfig.official(token_rate, vocab)
    model = SemantiCodecModel(config, fill("semantic_codebook", (vocab, config.feature_dim)))
    skip = [k for k in model.state_dict() if k.startswith("schedule.")] + ["audiomae.pos_embed"]
    fill_module(model, skip=skip)
    with torch.no_grad():
        model.audiomae.pos_embed.copy_(audiomae_pos_embed())
    return model.eval()


def parse_setting(text: str) -> tuple[str, int, str]:
    """``SAMPLER:STEPS[:PRECISION]`` -> (sampler, steps, precision); ``default``: the package's
    default decoding (the bundled model's sampler and steps, and its precision on this CPU)."""
    if text == "default":
        return DEFAULT_SETTING
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"decode setting must be SAMPLER:STEPS[:PRECISION], got {text!r}")
    return parts[0], int(parts[1]), parts[2] if len(parts) == 3 else "float32"


DEFAULT_SETTING = (*BUNDLED_SAMPLING, BUNDLED_PRECISION if native_bfloat16(torch.device("cpu")) else "float32")
"""``--decode default``: what ``SemantiCodec`` decodes the bundled model with on this CPU."""


def compress_peak_rss(model: SemantiCodecModel, seconds: float, folder: Path) -> float:
    """Peak RSS in MiB of a ``semanticodec compress`` process encoding ``seconds`` of audio with
    ``model`` saved as a float32 weights file (the process loads the encoder only)."""
    weights = folder / "model.safetensors"
    save_safetensors(model, weights, "float32")
    options = ["--checkpoint", str(weights), "--semantic-vocab-size", str(model.config.semantic_vocab_size)]
    return compress_rss(seconds, folder, options)


_PEAK_RSS = (
    "import os, sys; pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ); _, status, usage = os.wait4(pid, 0); "
    "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)"
)
"""Runs a command and prints its exit status and peak RSS (kB). Linux counts in a child's
``ru_maxrss`` the memory of the process it was started from, so commands are started from this
small launcher, not from the (large) benchmark process."""


def compress_rss(seconds: float, folder: Path, options: list[str], env: dict[str, str] | None = None) -> float:
    """Peak RSS in MiB of a ``semanticodec compress`` process (with ``options`` choosing the
    weights, in the environment ``env``) encoding ``seconds`` of noise written to ``folder``."""
    wav, out = folder / "in.wav", folder / "out.scdc"
    rng = np.random.default_rng(1)
    sf.write(wav, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    command = [sys.executable, "-m", "semanticodec", "compress", str(wav), str(out), *options, "--no-progress", "--force"]
    report = subprocess.run([sys.executable, "-c", _PEAK_RSS, *command], env=env, check=True, capture_output=True, text=True).stdout
    status, peak_kb = (int(n) for n in report.strip().splitlines()[-1].split())
    if status:
        raise subprocess.CalledProcessError(status, command)
    return peak_kb / 1024


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options (``--vocab`` is the deprecated spelling of ``--semantic-vocab-size``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--durations", type=float, nargs="*", default=[60.0], help="seconds of audio (none: only --compress-rss)"
    )
    parser.add_argument(
        "--decode", type=parse_setting, nargs="+", default=[("ddim", 50, "float32"), DEFAULT_SETTING],
        metavar="SAMPLER:STEPS[:PRECISION] or default",
        help="decode settings (default: the package default decoding); the first is the baseline of the speed-up column",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    vocab = parser.add_argument("--semantic-vocab-size", type=int, default=16384, help="semantic vocabulary size (default 16384)")
    deprecated_alias(parser, "--vocab", vocab)
    parser.add_argument("--compress-rss", type=float, metavar="SECONDS", help="also measure a compress process on this much audio")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument(
        "--split-clock", choices=sorted(CLOCK), default="wall",
        help="clock of the per-stage split (cpu with --threads 1: the work of each stage, whatever the machine's load)",
    )
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if not args.durations and not args.compress_rss:
        parser.error("nothing to measure: give --durations SECONDS or --compress-rss SECONDS")
    global clock
    clock = CLOCK[args.split_clock]

    model = build(100, args.semantic_vocab_size)
    torch.set_num_threads(args.threads)  # after build: numba's fill resets the OpenMP thread count
    rss = None
    if args.compress_rss:
        with tempfile.TemporaryDirectory() as folder:
            rss = compress_peak_rss(model, args.compress_rss, Path(folder))
        if not args.durations:
            print(f"semanticodec compress of {args.compress_rss:g} s (float32 weights file): peak RSS {rss:.0f} MiB")
            return
    instrument(model)
    encoder = SemantiCodec(model, device="cpu", seed=0, batch_size=args.batch_size)
    rng = np.random.default_rng(0)
    encoder.encode(rng.standard_normal(16000).astype(np.float32) * 0.1, 16000)
    rows = []
    for seconds in args.durations:
        audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        TIMES.clear()
        start, cpu = time.perf_counter(), time.process_time()
        encoded = encoder.encode(audio, 16000)
        enc, enc_cpu = time.perf_counter() - start, time.process_time() - cpu
        enc_windows = -(-len(audio) // WINDOW_SAMPLES)
        rows.append((seconds, "encode", enc, enc_cpu, enc_windows, dict(TIMES)))
        dec_windows = split_windows(torch.from_numpy(encoded.tokens)[None], window=model.tokens_per_window)[1].numel()
        for sampler, steps, precision in args.decode:
            codec = SemantiCodec(
                model, device="cpu", sampler=sampler, steps=steps, precision=precision, seed=0, batch_size=args.batch_size
            )
            TIMES.clear()
            start, cpu = time.perf_counter(), time.process_time()
            codec.decode(encoded)
            label = f"decode {sampler} {steps}" + ("" if precision == "float32" else f" {precision}")
            rows.append((seconds, label, time.perf_counter() - start, time.process_time() - cpu, dec_windows, dict(TIMES)))
            print(rows[-1], file=sys.stderr, flush=True)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size} windows; split clock {args.split_clock}; peak RSS of this process {peak:.0f} MiB")
    if rss is not None:
        print(f"semanticodec compress of {args.compress_rss:g} s (float32 weights file): peak RSS {rss:.0f} MiB")
    print()
    print(f"| audio | stage | seconds | CPU s | windows | s / window | RTF | speed-up ({args.split_clock}) | split (s, {args.split_clock}) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    baseline = {}
    for seconds, label, total, cpu, windows, parts in rows:
        cost = cpu if args.split_clock == "cpu" else total
        if label.startswith("decode"):
            baseline.setdefault(seconds, cost)
        speedup = f"{baseline[seconds] / cost:.2f}×" if label.startswith("decode") else ""
        split = ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
        print(f"| {seconds:g} s | {label} | {total:.1f} | {cpu:.1f} | {windows} | {total / windows:.2f} | {total / seconds:.2f} | {speedup} | {split} |")


if __name__ == "__main__":
    main()
