"""Model sub-commands of the ``semanticodec`` command line: compress, decompress, convert.

They are thin wrappers over :class:`semanticodec.codec.SemantiCodec` and the ``bitstream``
package; every output is written atomically, never over an input, and only replaces an
existing file with ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from semanticodec.cli import Command, register

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        help="official checkpoint folder or .safetensors file (default: $SEMANTICODEC_CHECKPOINT, then the Hugging Face cache)",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=4, help="10.24 s windows per forward pass (default 4)")
    parser.add_argument("--compat", choices=("default", "official"), default="default", help="reproduce the official quirks")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def _codec(args: argparse.Namespace, token_rate: int, vocab: int, **options):
    from semanticodec.codec import SemantiCodec

    return SemantiCodec.from_pretrained(
        token_rate,
        vocab,
        checkpoint=args.checkpoint,
        device=args.device,
        batch_size=args.batch_size,
        compat=args.compat,
        progress=not args.quiet,
        **options,
    )


def _configure_compress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio file (wav, flac, ogg, ...; any rate and channel count)")
    parser.add_argument("output", help="output .scdc file")
    parser.add_argument("--token-rate", type=int, choices=(100, 50, 25), default=100, help="tokens per second (default 100)")
    parser.add_argument("--vocab", type=int, default=16384, help="semantic vocabulary size (default 16384)")
    _add_model_options(parser)


def _run_compress(args: argparse.Namespace) -> int:
    from bitstream import Header, encode
    from semanticodec.atomic import atomic_write, check_output
    from semanticodec.audio import read_audio

    check_output(args.output, [args.input], args.force)
    read_audio(args.input)
    codec = _codec(args, args.token_rate, args.vocab)
    encoded = codec.encode(args.input)
    header = Header(
        token_rate=encoded.token_rate,
        semantic_vocab=encoded.semantic_vocab_size,
        acoustic_vocab=encoded.acoustic_vocab_size,
        model_id=encoded.model_id,
        sample_count=encoded.num_samples,
        sample_rate=encoded.sample_rate,
    )
    data = encode(encoded.tokens, header)
    with atomic_write(args.output, overwrite=args.force, inputs=[args.input]) as file:
        file.write(data)
    kbps = len(data) * 8 / encoded.duration / 1000
    print(f"{args.output}: {encoded.tokens.shape[0]} token pairs, {len(data)} bytes, {kbps:.3f} kbps", file=sys.stderr)
    return 0


def _configure_decompress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help=".scdc file")
    parser.add_argument("output", help="output audio file (.wav, .flac or .ogg)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50; fewer is faster)")
    parser.add_argument("--cfg-scale", type=float, default=2.0, help="classifier-free guidance scale (default 2.0)")
    parser.add_argument("--eta", type=float, default=1.0, help="DDIM eta (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the decoder noise (default 0)")
    parser.add_argument(
        "--original-rate", action="store_true", help="resample to the original sample rate (default: 16 kHz)"
    )
    _add_model_options(parser)


def _run_decompress(args: argparse.Namespace) -> int:
    import soundfile as sf

    from bitstream import read_file
    from semanticodec.atomic import atomic_write, check_output
    from semanticodec.audio import SAMPLE_RATE, resample
    from semanticodec.codec import EncodedAudio

    fmt = AUDIO_FORMATS.get(Path(args.output).suffix.lower())
    if fmt is None:
        raise ValueError(f"output {args.output}: unsupported audio format (use {', '.join(AUDIO_FORMATS)})")
    check_output(args.output, [args.input], args.force)
    header, tokens = read_file(args.input)
    codec = _codec(args, header.token_rate, header.semantic_vocab, ddim_steps=args.steps, cfg_scale=args.cfg_scale, eta=args.eta, seed=args.seed)
    if header.acoustic_vocab != codec.config.acoustic_vocab_size:
        raise ValueError(f"{args.input}: acoustic vocabulary {header.acoustic_vocab} != the model's {codec.config.acoustic_vocab_size}")
    sample_rate = header.sample_rate if header.sample_count else SAMPLE_RATE
    item = EncodedAudio(
        tokens=tokens,
        token_rate=header.token_rate,
        semantic_vocab_size=header.semantic_vocab,
        acoustic_vocab_size=header.acoustic_vocab,
        model_id=header.model_id,
        num_samples=header.sample_count or tokens.shape[0] * 2 * SAMPLE_RATE // header.token_rate,
        sample_rate=sample_rate,
    )
    audio = codec.decode(item)
    out_rate = SAMPLE_RATE
    if args.original_rate and sample_rate != SAMPLE_RATE:
        audio = resample(audio, SAMPLE_RATE, sample_rate)[: item.num_samples]
        out_rate = sample_rate
    with atomic_write(args.output, overwrite=args.force, inputs=[args.input]) as file:
        sf.write(file, np.clip(audio, -1.0, 1.0), out_rate, format=fmt)
    print(f"{args.output}: {len(audio) / out_rate:.2f} s at {out_rate} Hz", file=sys.stderr)
    return 0


def _configure_convert(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="official checkpoint folder (haoheliu/SemantiCodec layout)")
    parser.add_argument("output", help="output .safetensors file")
    parser.add_argument("--token-rate", type=int, choices=(100, 50, 25), default=100)
    parser.add_argument("--vocab", type=int, default=16384, help="semantic vocabulary size (default 16384)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def _run_convert(args: argparse.Namespace) -> int:
    from semanticodec.atomic import check_output
    from semanticodec.checkpoint import find_official_root, official_files
    from semanticodec.weights import load_official, save_safetensors

    if Path(args.output).suffix != ".safetensors":
        raise ValueError(f"output {args.output} must end in .safetensors")
    root = find_official_root(args.checkpoint)
    files = official_files(root, args.token_rate, args.vocab)
    inputs = [files.encoder, files.decoder, files.codebook]
    check_output(args.output, inputs, args.force)
    model = load_official(root, args.token_rate, args.vocab)
    save_safetensors(model, args.output, args.dtype, overwrite=args.force)
    before = sum(p.stat().st_size for p in inputs)
    after = Path(args.output).stat().st_size
    print(f"{args.output}: {after / 1e6:.1f} MB from {before / 1e6:.1f} MB of official files ({after / before:.1%})")
    return 0


register(Command("compress", "encode an audio file to a .scdc token stream", _configure_compress, _run_compress))
register(Command("decompress", "decode a .scdc token stream to audio", _configure_decompress, _run_decompress))
register(Command("convert", "write official checkpoints as one inference-only safetensors file", _configure_convert, _run_convert))
