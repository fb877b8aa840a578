"""Corpus sub-commands of the ``semanticodec`` command line: tokenize and detokenize.

``tokenize`` turns a folder or manifest of audio files into a sharded token dataset
(:mod:`semanticodec.corpus`); under ``torchrun`` every rank takes its share of the files.
``detokenize`` decodes token files of any LM format, or the files of a dataset, to audio.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from semanticodec.cli import EXIT_DAMAGED, EXIT_OK, Command, register
from semanticodec.commands import _add_model_options, _codec

DECODE_GROUP = 16
"""Files decoded per ``codec.decode`` call (their windows are batched together)."""


def _configure_tokenize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="folder of audio files (recursive) or manifest (.tsv/.csv/.jsonl with a file column)")
    parser.add_argument("--out", required=True, help="dataset folder (created; an existing one is resumed)")
    parser.add_argument("--token-rate", type=int, choices=(100, 50, 25), default=100, help="tokens per second (default 100)")
    parser.add_argument(
        "--vocab", type=int, default=None,
        help="semantic vocabulary size (default: 16384 with official checkpoints, else the bundled model's)",
    )
    parser.add_argument("--shard-rows", type=int, default=1 << 20, help="token pairs per shard (default 1048576)")
    parser.add_argument("--batch-windows", type=int, help="10.24 s windows gathered per encode call (default 4 x --batch-size)")
    _add_model_options(parser)


def _init_distributed(args: argparse.Namespace) -> bool:
    """Join the torchrun process group (gloo on CPU, NCCL on CUDA) when WORLD_SIZE > 1."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        args.device = f"cuda:{local}"
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def _run_tokenize(args: argparse.Namespace) -> int:
    from semanticodec.corpus import list_corpus, print_report, read_failures, tokenize_corpus

    files = list_corpus(args.source)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise NotADirectoryError(f"--out {args.out} exists and is not a folder")
    if args.shard_rows < 1:
        raise ValueError(f"--shard-rows must be >= 1, got {args.shard_rows}")
    started = _init_distributed(args)
    try:
        codec = _codec(args, args.token_rate, args.vocab)
        report = tokenize_corpus(
            codec, files, args.out, shard_rows=args.shard_rows, batch_windows=args.batch_windows, progress=not args.quiet
        )
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()
    print_report(report)
    if report.rank == 0:
        failed = read_failures(args.out)
        if failed:
            print(f"{len(failed)} files failed (listed in {Path(args.out) / 'failures.tsv'})", file=sys.stderr)
            return EXIT_DAMAGED
    return EXIT_DAMAGED if report.failures else EXIT_OK


def _configure_detokenize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="a token dataset folder, or .npy token files")
    parser.add_argument("--out", required=True, help="output folder for the .wav files (16 kHz)")
    parser.add_argument(
        "--format", choices=("auto", "pairs", "flat"), default="auto",
        help=".npy token format: pairs [T, 2], flat [L] (ids offset by V, specials allowed); auto: by shape",
    )
    parser.add_argument("--token-rate", type=int, choices=(100, 50, 25), default=100, help="of .npy inputs (default 100)")
    parser.add_argument("--vocab", type=int, default=None, help="semantic vocabulary of .npy inputs (default: the model's)")
    parser.add_argument("--files", nargs="+", metavar="NAME", help="only these files of a dataset (names as in its index)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50; fewer is faster)")
    parser.add_argument("--cfg-scale", type=float, default=2.0, help="classifier-free guidance scale (default 2.0)")
    parser.add_argument("--eta", type=float, default=1.0, help="DDIM eta (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the decoder noise (default 0)")
    _add_model_options(parser)


def load_token_file(path: str | Path, fmt: str, semantic_vocab: int, acoustic_vocab: int) -> np.ndarray:
    """Pairs int64 ``[T, 2]`` of a .npy file in the ``pairs`` (``[T, 2]`` or ``[1, T, 2]``) or
    ``flat`` (``[L]``) format; ``auto`` picks by the array's rank. No pickles are loaded."""
    from semanticodec.tokens import TokenFormat

    from semanticodec.safety import load_npy

    array = load_npy(path)
    if fmt == "auto":
        fmt = "flat" if array.ndim == 1 else "pairs"
    if fmt == "pairs" and array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    try:
        return np.asarray(TokenFormat(fmt, semantic_vocab, acoustic_vocab).decode(array))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _run_detokenize(args: argparse.Namespace) -> int:
    from semanticodec.atomic import atomic_write, check_output
    from semanticodec.codec import EncodedAudio
    from semanticodec.dataset import TokenDataset
    from semanticodec.safety import confined, printable

    out = Path(args.out)
    jobs: list[tuple[Path, str, object]] = []  # (output path, input, tokens or EncodedAudio)
    first = Path(args.inputs[0])
    options = {"ddim_steps": args.steps, "cfg_scale": args.cfg_scale, "eta": args.eta, "seed": args.seed}
    if first.is_dir():
        if len(args.inputs) > 1:
            raise ValueError("give one dataset folder, or .npy token files")
        data = TokenDataset(first)
        meta = data.meta
        codec = _codec(args, meta["token_rate"], meta["semantic_vocab"], bytes.fromhex(meta["model_id"]), **options)
        for name in args.files or [e["file"] for e in data.entries]:
            index = data.index_of(name)
            entry = data.entries[index]
            item = EncodedAudio(
                tokens=data.tokens(index), token_rate=meta["token_rate"], semantic_vocab_size=meta["semantic_vocab"],
                acoustic_vocab_size=meta["acoustic_vocab"], model_id=bytes.fromhex(meta["model_id"]),
                num_samples=entry["num_samples"], sample_rate=entry["sample_rate"],
            )
            jobs.append((confined(out, name).with_suffix(".wav"), str(first / entry["shard"]), item))
    else:
        if args.files:
            raise ValueError("--files selects files of a dataset folder")
        codec = _codec(args, args.token_rate, args.vocab, **options)
        for path in args.inputs:
            tokens = load_token_file(path, args.format, codec.config.semantic_vocab_size, codec.config.acoustic_vocab_size)
            jobs.append((out / Path(path).with_suffix(".wav").name, path, tokens))
    targets = [target for target, _, _ in jobs]
    if len(set(targets)) != len(targets):
        raise ValueError("two inputs would be written to the same output file")
    for target, source, _ in jobs:
        target.parent.mkdir(parents=True, exist_ok=True)
        check_output(target, [source], args.force)
    import soundfile as sf

    for start in range(0, len(jobs), DECODE_GROUP):
        group = jobs[start : start + DECODE_GROUP]
        audio = codec.decode([tokens for _, _, tokens in group])
        for (target, source, _), wave in zip(group, audio):
            with atomic_write(target, overwrite=args.force, inputs=[source]) as file:
                sf.write(file, np.clip(wave, -1.0, 1.0), 16000, format="WAV")
            print(f"{printable(str(target))}: {len(wave) / 16000:.2f} s", file=sys.stderr)
    return EXIT_OK


register(Command(
    "tokenize", "encode an audio corpus into a sharded token dataset", _configure_tokenize, _run_tokenize,
    "Encode every audio file of a folder (recursive) or manifest into token shards with an index "
    "(resumable: files already indexed are skipped). Under torchrun each rank takes its share. "
    "Exit status 1 when some files failed (listed at the end and in failures.tsv).",
))
register(Command(
    "detokenize", "decode token files or a token dataset to audio", _configure_detokenize, _run_detokenize,
))
