"""The dataset commands: ``tokenize`` and ``detokenize``.

``tokenize`` turns a folder or manifest of audio files into a sharded token dataset
(:mod:`semanticodec.corpus`); under ``torchrun`` every rank takes its share of the files.
``detokenize`` decodes token files of any LM format, or the files of a dataset, to audio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from semanticodec.commands import EXIT_DAMAGED, EXIT_OK
from semanticodec.commands.codec import add_decoder_options, add_model_options, add_vocab_option, decoder_options, load_codec
from semanticodec.constants import SAMPLE_RATE, TOKEN_RATES

DECODE_GROUP = 16
"""Files decoded per ``codec.decode`` call (their windows are batched together)."""


def configure_tokenize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="folder of audio files (recursive) or manifest (.tsv/.csv/.jsonl with a file column)")
    parser.add_argument("-o", "--output", required=True, help="dataset folder (created; an existing one is resumed)")
    parser.add_argument("--token-rate", type=int, choices=TOKEN_RATES, default=100, help="tokens per second (default 100)")
    add_vocab_option(parser, None, "semantic vocabulary size (default: 16384 with official checkpoints, else the bundled model's)")
    parser.add_argument("--shard-rows", type=int, default=1 << 20, help="token pairs per shard (default 1048576)")
    parser.add_argument("--batch-windows", type=int, help="10.24 s windows gathered per encode call (default 4 x --batch-size)")
    add_model_options(parser)


def run_tokenize(args: argparse.Namespace) -> int:
    from semanticodec.corpus import list_corpus, print_report, read_failures, tokenize_corpus
    from semanticodec.distributed import join_torchrun

    files = list_corpus(args.source)
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise NotADirectoryError(f"--output {args.output} exists and is not a folder")
    if args.shard_rows < 1:
        raise ValueError(f"--shard-rows must be >= 1, got {args.shard_rows}")
    args.device, started = join_torchrun(args.device)
    try:
        codec = load_codec(args, args.token_rate, args.semantic_vocab_size, with_decoder=False)
        report = tokenize_corpus(
            codec, files, args.output, shard_rows=args.shard_rows, batch_windows=args.batch_windows, progress=not args.no_progress
        )
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()
    print_report(report)
    if report.rank == 0:
        failed = read_failures(args.output)
        if failed:
            print(f"{len(failed)} files failed (listed in {Path(args.output) / 'failures.tsv'})", file=sys.stderr)
            return EXIT_DAMAGED
    return EXIT_DAMAGED if report.failures else EXIT_OK


def configure_detokenize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="a token dataset folder, or .npy token files")
    parser.add_argument("-o", "--output", required=True, help="output folder for the .wav files (16 kHz)")
    parser.add_argument(
        "--format", choices=("auto", "pairs", "flat"), default="auto",
        help=".npy token format: pairs [T, 2], flat [L] (ids offset by V, specials allowed); auto: by shape",
    )
    parser.add_argument("--token-rate", type=int, choices=TOKEN_RATES, default=100, help="of .npy inputs (default 100)")
    add_vocab_option(parser, None, "semantic vocabulary of .npy inputs (default: the model's)")
    parser.add_argument("--files", nargs="+", metavar="NAME", help="only these files of a dataset (names as in its index)")
    add_decoder_options(parser)
    add_model_options(parser)


def run_detokenize(args: argparse.Namespace) -> int:
    from semanticodec.atomic import atomic_write, check_output
    from semanticodec.dataset import TokenDataset
    from semanticodec.encoded import EncodedAudio
    from semanticodec.safety import confined, printable
    from semanticodec.tokens import load_token_file

    out = Path(args.output)
    jobs: list[tuple[Path, str, object]] = []  # (output path, input, tokens or EncodedAudio)
    first = Path(args.inputs[0])
    options = decoder_options(args)
    if first.is_dir():
        if len(args.inputs) > 1:
            raise ValueError("give one dataset folder, or .npy token files")
        data = TokenDataset(first)
        meta = data.meta
        codec = load_codec(args, meta["token_rate"], meta["semantic_vocab_size"], bytes.fromhex(meta["model_id"]), **options)
        for name in args.files or [e["file"] for e in data.entries]:
            index = data.index_of(name)
            entry = data.entries[index]
            item = EncodedAudio(
                tokens=data.tokens(index), token_rate=meta["token_rate"], semantic_vocab_size=meta["semantic_vocab_size"],
                acoustic_vocab_size=meta["acoustic_vocab_size"], model_id=bytes.fromhex(meta["model_id"]),
                sample_count=entry["sample_count"], sample_rate=entry["sample_rate"],
            )
            jobs.append((confined(out, name).with_suffix(".wav"), str(first / entry["shard"]), item))
    else:
        if args.files:
            raise ValueError("--files selects files of a dataset folder")
        codec = load_codec(args, args.token_rate, args.semantic_vocab_size, **options)
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
                sf.write(file, np.clip(wave, -1.0, 1.0), SAMPLE_RATE, format="WAV")
            print(f"{printable(str(target))}: {len(wave) / SAMPLE_RATE:.2f} s", file=sys.stderr)
    return EXIT_OK
