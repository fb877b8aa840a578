"""Encode and decode speed of the full-size model (token rate 100) on this machine.

Weights are the deterministic ``benchmarks.fill`` values (every op is dense, so the cost is
that of the real checkpoints). Prints a Markdown table of real-time factors (compute seconds
per second of audio) and where the time goes, to paste into ``benchmarks/RESULTS.md``.

    python benchmarks/bench_codec.py --durations 10 60 --steps 50 --batch-size 4
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import torch

from benchmarks.fill import fill, fill_module
from semanticodec.codec import SemantiCodec
from semanticodec.config import ModelConfig
from semanticodec.model import SemantiCodecModel
from semanticodec.nn.vit import audiomae_pos_embed

TIMES: dict[str, float] = defaultdict(float)


@contextmanager
def timed(name: str):
    start = time.perf_counter()
    yield
    TIMES[name] += time.perf_counter() - start


def instrument(model: SemantiCodecModel) -> None:
    """Accumulate the wall time of each stage's forward in TIMES."""
    stages = {
        "audiomae": (model.audiomae, "forward"),
        "lstm": (model.acoustic.encoder, "forward"),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0], help="seconds of audio")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--skip-decode", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(torch.get_num_threads())
    model = build(100, args.vocab)
    instrument(model)
    codec = SemantiCodec(model, device="cpu", steps=args.steps, seed=0, batch_size=args.batch_size)
    rng = np.random.default_rng(0)
    codec.encode(rng.standard_normal(16000).astype(np.float32) * 0.1, 16000)
    rows = []
    for seconds in args.durations:
        audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        TIMES.clear()
        start = time.perf_counter()
        encoded = codec.encode(audio, 16000)
        enc = time.perf_counter() - start
        enc_parts = dict(TIMES)
        dec, dec_parts = float("nan"), {}
        if not args.skip_decode:
            TIMES.clear()
            start = time.perf_counter()
            codec.decode(encoded)
            dec = time.perf_counter() - start
            dec_parts = dict(TIMES)
        rows.append((seconds, enc, enc_parts, dec, dec_parts))

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; DDIM steps {args.steps}, batch {args.batch_size} windows; peak RSS {peak:.0f} MiB")
    print()
    print("| audio | encode s | encode RTF | decode s | decode RTF | encode split | decode split |")
    print("|---|---|---|---|---|---|---|")
    for seconds, enc, ep, dec, dp in rows:
        split_e = ", ".join(f"{k} {v:.1f}" for k, v in ep.items())
        split_d = ", ".join(f"{k} {v:.1f}" for k, v in dp.items())
        print(f"| {seconds:g} s | {enc:.1f} | {enc / seconds:.2f} | {dec:.1f} | {dec / seconds:.2f} | {split_e} | {split_d} |")


if __name__ == "__main__":
    main()
