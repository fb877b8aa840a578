"""The codec commands: ``compress``, ``decompress`` and ``convert``, and the model options that
every command using a model shares (:func:`add_model_options`, :func:`load_codec`).

They are thin wrappers over :class:`semanticodec.codec.SemantiCodec`,
:mod:`semanticodec.streaming` and the ``bitstream`` package; every file output is written
atomically, never over an input, and only replaces an existing file with ``--force``.

``-`` as input or output means standard input or output. Such pipes, and files longer than
``STREAM_SECONDS``, are coded in streaming mode with memory bounded independently of the
length: ``compress`` reads the audio in blocks and writes packets as windows are encoded,
``decompress`` decodes windows as packets arrive (conceals lost or corrupt packets, exit
status 1 when it had to) and writes audio as it becomes final. Raw audio on standard input
needs ``--input-rate`` (``--input-format``, ``--channels``); a WAV stream on standard input
is recognised by its header; ``decompress ... -`` writes a 16-bit WAV stream.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np

from semanticodec.commands import EXIT_DAMAGED, EXIT_OK, add_entropy_option, deprecated_alias
from semanticodec.constants import CONCEALMENTS, TOKEN_RATES
from semanticodec.released import weights_name
from semanticodec.wavstream import RAW_FORMATS

if TYPE_CHECKING:
    from semanticodec.bitstream import Header

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}

STREAM_SECONDS = 60.0
"""Inputs longer than this are coded in streaming mode (bounded memory)."""

BLOCK_SECONDS = 1.0
"""Audio read or written per step in streaming mode."""


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint``, ``--model``, ``--offline``, ``--device``, ``--batch-size``, ``--compat``, ``--no-progress``, ``--force``."""
    parser.add_argument(
        "--checkpoint",
        help="official checkpoint folder or .safetensors file (default: $SEMANTICODEC_CHECKPOINT, then the official weights: cached, else downloaded)",
    )
    parser.add_argument("--model", choices=("small", "official"),
                        help="small: the bundled small model; official: official weights only (default: official weights "
                             "when named, cached or reachable, else the bundled model)")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="never touch the network (as HF_HUB_OFFLINE=1): use cached weights only")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=4, help="10.24 s windows per forward pass (default 4)")
    parser.add_argument("--compat", choices=("default", "official"), default="default", help="reproduce the official quirks")
    no_progress = parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    deprecated_alias(parser, "--quiet", no_progress)
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def add_vocab_option(parser: argparse.ArgumentParser, default: int | None, help: str) -> None:
    """``--semantic-vocab-size`` (old spelling ``--vocab``)."""
    option = parser.add_argument("--semantic-vocab-size", type=int, default=default, metavar="V", help=help)
    deprecated_alias(parser, "--vocab", option)


def add_decoder_options(parser: argparse.ArgumentParser) -> None:
    """``--sampler``, ``--steps``, ``--guidance-scale`` (old spelling ``--cfg-scale``), ``--eta``,
    ``--seed``, ``--precision``."""
    from semanticodec.codec import PRECISIONS
    from semanticodec.samplers import SAMPLERS

    parser.add_argument(
        "--sampler", choices=SAMPLERS,
        help="ddim (official), or the fast deterministic solvers dpmpp-2m, unipc (default: the model's; ddim for official checkpoints)",
    )
    parser.add_argument("--steps", type=int, help="model evaluations per window; fewer is faster (default: the model's; 50 for official checkpoints)")
    guidance = parser.add_argument("--guidance-scale", type=float, default=2.0, help="classifier-free guidance scale (default 2.0)")
    deprecated_alias(parser, "--cfg-scale", guidance)
    parser.add_argument("--eta", type=float, default=1.0, help="DDIM eta (default 1.0; ddim only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the decoder noise (default 0)")
    parser.add_argument(
        "--precision", choices=tuple(PRECISIONS),
        help="decoder arithmetic: float32 (exact), autocast to bfloat16 / float16 (faster, slightly different audio), "
        "or mixed (only the VAE decoder and vocoder in bfloat16); default: mixed for the bundled model on CPUs with "
        "AVX512-BF16 or AMX and on GPUs, else float32",
    )


def decoder_options(args: argparse.Namespace) -> dict:
    """The codec's decoding options given by :func:`add_decoder_options`."""
    names = ("sampler", "steps", "guidance_scale", "eta", "seed", "precision")
    return {name: getattr(args, name) for name in names}


def load_codec(args: argparse.Namespace, token_rate: int, semantic_vocab_size: int | None, model_id: bytes | None = None, **options):
    """The codec the options select; tokens of the bundled default model (``model_id``) decode
    with it unless ``--checkpoint`` says otherwise. An encoder-only codec
    (``with_decoder=False``) is for a process that only encodes: large freed blocks then go
    back to the system at once (:func:`~semanticodec.heap.return_large_frees`); ``staged``
    as well holds one of the encoder's two large parts in memory at a time
    (:meth:`~semanticodec.model.SemantiCodecModel.stage_weights`)."""
    from semanticodec.codec import SemantiCodec
    from semanticodec.heap import return_large_frees
    from semanticodec.weights import checkpoint_for

    if options.get("with_decoder") is False:
        return_large_frees()

    checkpoint = args.checkpoint
    if checkpoint is None and model_id is not None and args.model is None:
        checkpoint = checkpoint_for(model_id)
    codec = SemantiCodec.from_pretrained(
        checkpoint,
        token_rate=token_rate,
        semantic_vocab_size=semantic_vocab_size,
        device=args.device,
        batch_size=args.batch_size,
        compat=args.compat,
        progress=not args.no_progress,
        model=args.model,
        offline=args.offline,
        **options,
    )
    if not args.no_progress:
        print(f"weights: {weights_name(codec.model_id)}", file=sys.stderr)
    return codec


def configure_compress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio file (wav, flac, ogg, ...; any rate and channel count), '-': WAV or raw PCM on stdin")
    parser.add_argument("output", help="output .scdc file ('-': standard output)")
    parser.add_argument("--token-rate", type=int, choices=TOKEN_RATES, default=100, help="tokens per second (default 100)")
    add_vocab_option(parser, None, "semantic vocabulary size (default: 16384 with official checkpoints, else the bundled model's)")
    parser.add_argument("--input-rate", type=int, metavar="HZ", help="sample rate of raw audio on stdin (required for raw PCM)")
    parser.add_argument("--input-format", choices=tuple(RAW_FORMATS), default="s16le", help="raw sample format (default s16le)")
    parser.add_argument("--channels", type=int, default=1, help="interleaved channels of raw audio (default 1)")
    parser.add_argument(
        "--low-latency", type=float, metavar="SECONDS",
        help="stream in low-latency mode with this block length (a multiple of 0.16 s; tokens differ from offline)",
    )
    parser.add_argument("--lookahead", type=float, default=0.32, metavar="SECONDS", help="low-latency look-ahead (0.32)")
    parser.add_argument("--packet-columns", type=int, metavar="N", help="token columns per packet (default: the format's)")
    add_entropy_option(parser)
    add_model_options(parser)


def _audio_blocks(args: argparse.Namespace) -> tuple[Iterator[np.ndarray], int, int]:
    """Blocks ``[C, n]`` of the input audio, its sample rate and its length (0 when unknown)."""
    import soundfile as sf

    from semanticodec.audio import AudioError, check_sample_rate
    from semanticodec.wavstream import MAGICS, open_wav_stream, raw_pcm_blocks

    if args.input != "-":
        if not Path(args.input).is_file():
            raise AudioError(f"{args.input}: no such audio file")
        try:
            info = sf.info(args.input)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"{args.input}: cannot read audio ({err})") from None
        block = max(1, int(info.samplerate * BLOCK_SECONDS))
        blocks: Iterator[np.ndarray] = (b.T for b in sf.blocks(args.input, blocksize=block, dtype="float32", always_2d=True))
        return blocks, int(info.samplerate), int(info.frames)
    stdin = sys.stdin.buffer
    magic = stdin.read(4)
    if magic in MAGICS:
        info, blocks = open_wav_stream(stdin.read, magic, BLOCK_SECONDS)
        check_sample_rate(info.sample_rate)
        if args.input_rate is not None and args.input_rate != info.sample_rate:
            raise ValueError(f"--input-rate {args.input_rate} contradicts the WAV header on standard input ({info.sample_rate} Hz)")
        return blocks, info.sample_rate, info.frames
    if magic in (b"fLaC", b"OggS"):
        raise AudioError("standard input holds FLAC/Ogg, which cannot be read from a pipe: send WAV or raw PCM")
    if args.input_rate is None:
        raise ValueError("raw audio on standard input needs --input-rate (or send a WAV stream)")
    check_sample_rate(args.input_rate)
    blocks = raw_pcm_blocks(stdin.read, args.input_format, args.channels, args.input_rate, magic, BLOCK_SECONDS)
    return blocks, int(args.input_rate), 0


def _streaming(args: argparse.Namespace, seconds: float | None) -> bool:
    return args.input == "-" or args.output == "-" or seconds is None or seconds > STREAM_SECONDS


def _open_output(args: argparse.Namespace):
    from semanticodec.atomic import atomic_write

    if args.output == "-":
        return contextlib.nullcontext(sys.stdout.buffer)
    return atomic_write(args.output, overwrite=args.force, inputs=[] if args.input == "-" else [args.input])


def _compress_stream(args: argparse.Namespace) -> int:
    from semanticodec.streaming import LowLatencyConfig, StreamingEncoder

    blocks, rate, frames = _audio_blocks(args)
    codec = load_codec(args, args.token_rate, args.semantic_vocab_size, with_decoder=False)
    mode: Literal["exact", "low_latency"] = "exact" if args.low_latency is None else "low_latency"
    low_latency = None if args.low_latency is None else LowLatencyConfig.fitted(args.low_latency, args.lookahead)
    # a file is encoded --batch-size windows at a time; a pipe one at a time, for latency
    batch = args.batch_size if mode == "exact" and args.input != "-" else 1
    encoder = StreamingEncoder(
        codec, rate, mode=mode, low_latency=low_latency, sample_count=frames, packet_columns=args.packet_columns,
        tables=None if args.no_entropy else "model", batch_windows=batch,
    )
    size = 0
    with _open_output(args) as file:
        for block in blocks:
            data = encoder.push(block)
            file.write(data)
            file.flush()
            size += len(data)
        data = encoder.finish()
        file.write(data)
        file.flush()
        size += len(data)
    seconds = encoder.samples_received / rate
    print(f"{args.output}: {seconds:.2f} s, {size} bytes, {size * 8 / max(seconds, 1e-9) / 1000:.3f} kbps", file=sys.stderr)
    return EXIT_OK


def run_compress(args: argparse.Namespace) -> int:
    from semanticodec.atomic import check_output

    if args.output != "-":
        check_output(args.output, [] if args.input == "-" else [args.input], args.force)
    seconds = None
    if args.input != "-":
        _, rate, frames = _audio_blocks(args)
        seconds = frames / rate
    if _streaming(args, seconds) or args.low_latency is not None:
        return _compress_stream(args)
    codec = load_codec(args, args.token_rate, args.semantic_vocab_size, with_decoder=False, staged=True)
    encoded = codec.encode(args.input)
    check_output(args.output, [args.input], args.force)
    size = encoded.save(args.output, args.packet_columns, overwrite=args.force, tables=None if args.no_entropy else "model")
    kbps = size * 8 / encoded.duration / 1000
    print(f"{args.output}: {encoded.tokens.shape[0]} token pairs, {size} bytes, {kbps:.3f} kbps", file=sys.stderr)
    return EXIT_OK


def configure_decompress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help=".scdc file ('-': standard input, decoded as it arrives)")
    parser.add_argument("output", help="output audio file (.wav, .flac or .ogg; '-': 16-bit WAV on standard output)")
    add_decoder_options(parser)
    parser.add_argument(
        "--concealment", choices=CONCEALMENTS, default=CONCEALMENTS[0],
        help="lost packets: diffusion inpainting from the audio around them (default) or decoded as padding",
    )
    parser.add_argument(
        "--original-rate", action="store_true", help="resample to the original sample rate (default: 16 kHz)"
    )
    parser.add_argument(
        "--semantic-only", action="store_true",
        help="decode the semantic layer alone (half the bitrate; only models trained for it, never official ones)",
    )
    add_model_options(parser)


def run_decompress(args: argparse.Namespace) -> int:
    import soundfile as sf

    from semanticodec.atomic import atomic_write, check_output
    from semanticodec.audio import resample
    from semanticodec.constants import SAMPLE_RATE
    from semanticodec.encoded import EncodedAudio

    fmt = "WAV" if args.output == "-" else AUDIO_FORMATS.get(Path(args.output).suffix.lower())
    if fmt is None:
        raise ValueError(f"output {args.output}: unsupported audio format (use {', '.join(AUDIO_FORMATS)})")
    if args.output != "-":
        check_output(args.output, [] if args.input == "-" else [args.input], args.force)
    if args.input == "-" or args.output == "-" or _long_stream(args.input):
        return _decompress_stream(args, fmt)
    item = EncodedAudio.load(args.input, layers="semantic" if args.semantic_only else "both")
    codec = load_codec(args, item.token_rate, item.semantic_vocab_size, item.model_id, **decoder_options(args))
    if args.semantic_only:
        codec.model.check_semantic_only()
    if item.acoustic_vocab_size != codec.config.acoustic_vocab_size:
        raise ValueError(f"{args.input}: acoustic vocabulary {item.acoustic_vocab_size} != the model's {codec.config.acoustic_vocab_size}")
    sample_rate = item.sample_rate
    audio = codec.decode(item, semantic_only=args.semantic_only)
    out_rate = SAMPLE_RATE
    if args.original_rate and sample_rate != SAMPLE_RATE:
        audio = resample(audio, SAMPLE_RATE, sample_rate)[: item.sample_count]
        out_rate = sample_rate
    with atomic_write(args.output, overwrite=args.force, inputs=[args.input]) as file:
        sf.write(file, np.clip(audio, -1.0, 1.0), out_rate, format=fmt)
    print(f"{args.output}: {len(audio) / out_rate:.2f} s at {out_rate} Hz", file=sys.stderr)
    return EXIT_OK


def _long_stream(path: str) -> bool:
    """Whether the .scdc file ``path`` is longer than STREAM_SECONDS (or of unknown length)."""
    from semanticodec.bitstream.header import read_header

    with open(path, "rb") as file:
        duration = read_header(file.read).duration
    return duration is None or duration > STREAM_SECONDS


def _read_header(source: BinaryIO) -> tuple[Header, bytes]:
    """The header at the start of a .scdc stream, and its bytes (read from ``source``, no seeking)."""
    from semanticodec.bitstream.header import read_header

    taken = bytearray()

    def read(n: int) -> bytes:
        data = source.read(n)
        taken.extend(data)
        return data

    return read_header(read), bytes(taken)


def _decompress_stream(args: argparse.Namespace, fmt: str) -> int:
    import soundfile as sf

    from semanticodec.audio import StreamResampler
    from semanticodec.constants import COLUMN_SECONDS, SAMPLE_RATE
    from semanticodec.streaming import StreamingDecoder
    from semanticodec.wavstream import wav_stream_header

    with contextlib.ExitStack() as stack:
        source = sys.stdin.buffer if args.input == "-" else stack.enter_context(open(args.input, "rb"))
        header, head = _read_header(source)
        codec = load_codec(args, header.token_rate, header.semantic_vocab_size, header.model_id, **decoder_options(args))
        decoder = StreamingDecoder(
            codec, on_damage=lambda d: print(f"{args.input}: {d} (concealed)", file=sys.stderr), concealment=args.concealment,
            semantic_only=args.semantic_only,
        )
        out_rate, resampler, limit = SAMPLE_RATE, None, None
        if header.sample_count:
            limit = -(-header.sample_count * SAMPLE_RATE // header.sample_rate)
            if args.original_rate and header.sample_rate != SAMPLE_RATE:
                out_rate, resampler, limit = header.sample_rate, StreamResampler(SAMPLE_RATE, header.sample_rate), header.sample_count
        file = stack.enter_context(_open_output(args))
        if args.output == "-":
            file.write(wav_stream_header(out_rate, limit))
            sink = None
        else:
            sink = stack.enter_context(sf.SoundFile(file, "w", out_rate, 1, format=fmt))
        written = 0

        def write(audio: np.ndarray, final: bool = False) -> None:
            nonlocal written
            if resampler is not None:
                audio = resampler.push(audio, final=final)
            if limit is not None:
                audio = audio[: limit - written]
            audio = np.clip(audio, -1.0, 1.0)
            written += len(audio)
            if sink is not None:
                sink.write(audio)
            else:
                file.write(np.round(audio * 32767).astype("<i2").tobytes())
                file.flush()

        read = getattr(source, "read1", source.read)
        write(decoder.push(head))
        while chunk := read(1 << 16):
            write(decoder.push(chunk))
        write(decoder.finish(), final=True)
        if limit is not None and 0 < limit - written <= 2 * COLUMN_SECONDS[header.token_rate] * out_rate:
            write(np.zeros(limit - written, np.float32))  # the sample count may outlast the tokens by 2 columns
    print(f"{args.output}: {written / out_rate:.2f} s at {out_rate} Hz", file=sys.stderr)
    if decoder.damage:
        print(f"{args.input}: {decoder.lost_pairs} token pairs lost and concealed", file=sys.stderr)
        return EXIT_DAMAGED
    return EXIT_OK


def configure_convert(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="official checkpoint folder (haoheliu/SemantiCodec layout)")
    parser.add_argument("output", help="output .safetensors file")
    parser.add_argument("--token-rate", type=int, choices=TOKEN_RATES, default=100, help="tokens per second (default 100)")
    add_vocab_option(parser, 16384, "semantic vocabulary size (default 16384)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def run_convert(args: argparse.Namespace) -> int:
    from semanticodec.atomic import check_output
    from semanticodec.official import CheckpointError, find_official_root, official_files
    from semanticodec.weights import load_official, save_safetensors

    if Path(args.output).suffix != ".safetensors":
        raise ValueError(f"output {args.output} must end in .safetensors")
    root = find_official_root(args.checkpoint)
    if root is None:
        raise CheckpointError("no official checkpoint given: name its folder (or set $SEMANTICODEC_CHECKPOINT)")
    files = official_files(root, args.token_rate, args.semantic_vocab_size)
    inputs = [files.encoder, files.decoder, files.codebook]
    check_output(args.output, inputs, args.force)
    model = load_official(root, args.token_rate, args.semantic_vocab_size)
    save_safetensors(model, args.output, args.dtype, overwrite=args.force)
    before = sum(p.stat().st_size for p in inputs)
    after = Path(args.output).stat().st_size
    print(f"{args.output}: {after / 1e6:.1f} MB from {before / 1e6:.1f} MB of official files ({after / before:.1%})")
    return EXIT_OK
