"""Model sub-commands of the ``semanticodec`` command line: compress, decompress, convert.

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
import io
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from semanticodec.cli import Command, register

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}

STREAM_SECONDS = 60.0
"""Inputs longer than this are coded in streaming mode (bounded memory)."""

RAW_FORMATS = {"s16le": "<i2", "s32le": "<i4", "f32le": "<f4"}
"""Raw PCM sample formats accepted on standard input (little-endian, interleaved channels)."""

BLOCK_SECONDS = 1.0
"""Audio read or written per step in streaming mode."""

EXIT_CONCEALED = 1
"""Exit status of ``decompress`` when damaged or missing packets were concealed."""


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


def _codec(args: argparse.Namespace, token_rate: int, vocab: int | None, model_id: bytes | None = None, **options):
    """The codec the options select; tokens of the bundled default model (``model_id``) decode
    with it unless ``--checkpoint`` says otherwise."""
    from semanticodec.codec import SemantiCodec
    from semanticodec.weights import checkpoint_for

    checkpoint = args.checkpoint
    if checkpoint is None and model_id is not None:
        checkpoint = checkpoint_for(model_id)
    return SemantiCodec(
        token_rate,
        vocab,
        checkpoint=checkpoint,
        device=args.device,
        batch_size=args.batch_size,
        compat=args.compat,
        progress=not args.quiet,
        **options,
    )


def _configure_compress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio file (wav, flac, ogg, ...; any rate and channel count), '-': WAV or raw PCM on stdin")
    parser.add_argument("output", help="output .scdc file ('-': standard output)")
    parser.add_argument("--token-rate", type=int, choices=(100, 50, 25), default=100, help="tokens per second (default 100)")
    parser.add_argument(
        "--vocab", type=int, default=None,
        help="semantic vocabulary size (default: 16384 with official checkpoints, else the bundled model's)",
    )
    parser.add_argument("--input-rate", type=int, metavar="HZ", help="sample rate of raw audio on stdin (required for raw PCM)")
    parser.add_argument("--input-format", choices=tuple(RAW_FORMATS), default="s16le", help="raw sample format (default s16le)")
    parser.add_argument("--channels", type=int, default=1, help="interleaved channels of raw audio (default 1)")
    parser.add_argument(
        "--low-latency", type=float, metavar="SECONDS",
        help="stream in low-latency mode with this block length (a multiple of 0.16 s; tokens differ from offline)",
    )
    parser.add_argument("--lookahead", type=float, default=0.32, metavar="SECONDS", help="low-latency look-ahead (0.32)")
    parser.add_argument("--packet-columns", type=int, metavar="N", help="token columns per packet (default: the format's)")
    _add_model_options(parser)


def _audio_blocks(args: argparse.Namespace) -> tuple[Iterator[np.ndarray], int, int]:
    """Blocks ``[C, n]`` of the input audio, its sample rate and its length (0 when unknown)."""
    import soundfile as sf

    from semanticodec.audio import AudioError, check_sample_rate
    from semanticodec.wavstream import MAGICS, open_wav_stream

    if args.input != "-":
        if not Path(args.input).is_file():
            raise AudioError(f"{args.input}: no such audio file")
        try:
            info = sf.info(args.input)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"{args.input}: cannot read audio ({err})") from None
        block = max(1, int(info.samplerate * BLOCK_SECONDS))
        blocks = (b.T for b in sf.blocks(args.input, blocksize=block, dtype="float32", always_2d=True))
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
    if not 1 <= args.channels <= 64:
        raise ValueError(f"--channels must lie in 1..64, got {args.channels}")
    dtype = np.dtype(RAW_FORMATS[args.input_format])
    frame = dtype.itemsize * args.channels
    block = max(1, int(args.input_rate * BLOCK_SECONDS)) * frame

    def read() -> Iterator[np.ndarray]:
        pending = magic
        while True:
            data = stdin.read(block)
            if not data:
                break
            data = pending + data
            usable = len(data) - len(data) % frame
            pending = data[usable:]
            yield np.frombuffer(data[:usable], dtype).reshape(-1, args.channels).T
        if pending:
            raise ValueError(f"standard input ends inside a sample frame ({len(pending)} stray bytes)")

    return read(), int(args.input_rate), 0


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
    codec = _codec(args, args.token_rate, args.vocab)
    mode = "exact" if args.low_latency is None else "low_latency"
    low_latency = None if args.low_latency is None else LowLatencyConfig.fitted(args.low_latency, args.lookahead)
    encoder = StreamingEncoder(
        codec, rate, mode=mode, low_latency=low_latency, sample_count=frames, packet_columns=args.packet_columns
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
    return 0


def _run_compress(args: argparse.Namespace) -> int:
    from bitstream import encode
    from semanticodec.atomic import atomic_write, check_output

    if args.output != "-":
        check_output(args.output, [] if args.input == "-" else [args.input], args.force)
    seconds = None
    if args.input != "-":
        _, rate, frames = _audio_blocks(args)
        seconds = frames / rate
    if _streaming(args, seconds) or args.low_latency is not None:
        return _compress_stream(args)
    codec = _codec(args, args.token_rate, args.vocab)
    encoded = codec.encode(args.input)
    data = encode(encoded.tokens, encoded.header(args.packet_columns))
    with atomic_write(args.output, overwrite=args.force, inputs=[args.input]) as file:
        file.write(data)
    kbps = len(data) * 8 / encoded.duration / 1000
    print(f"{args.output}: {encoded.tokens.shape[0]} token pairs, {len(data)} bytes, {kbps:.3f} kbps", file=sys.stderr)
    return 0


def _configure_decompress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help=".scdc file ('-': standard input, decoded as it arrives)")
    parser.add_argument("output", help="output audio file (.wav, .flac or .ogg; '-': 16-bit WAV on standard output)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50; fewer is faster)")
    parser.add_argument("--cfg-scale", type=float, default=2.0, help="classifier-free guidance scale (default 2.0)")
    parser.add_argument("--eta", type=float, default=1.0, help="DDIM eta (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the decoder noise (default 0)")
    parser.add_argument(
        "--concealment", choices=("inpaint", "padding"), default="inpaint",
        help="lost packets: diffusion inpainting from the audio around them (default) or decoded as padding",
    )
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

    fmt = "WAV" if args.output == "-" else AUDIO_FORMATS.get(Path(args.output).suffix.lower())
    if fmt is None:
        raise ValueError(f"output {args.output}: unsupported audio format (use {', '.join(AUDIO_FORMATS)})")
    if args.output != "-":
        check_output(args.output, [] if args.input == "-" else [args.input], args.force)
    if args.input == "-" or args.output == "-" or _long_stream(args.input):
        return _decompress_stream(args, fmt)
    header, tokens = read_file(args.input)
    codec = _codec(args, header.token_rate, header.semantic_vocab, header.model_id, ddim_steps=args.steps, cfg_scale=args.cfg_scale, eta=args.eta, seed=args.seed)
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


def _long_stream(path: str) -> bool:
    """Whether the .scdc file ``path`` is longer than STREAM_SECONDS (or of unknown length)."""
    from bitstream import StreamReader

    with open(path, "rb") as file:
        duration = StreamReader(file).header.duration
    return duration is None or duration > STREAM_SECONDS


def _read_header_bytes(source) -> bytes:
    """The header bytes at the start of a .scdc stream (fixed part, metadata, CRC)."""
    from bitstream import BitstreamError

    fixed = source.read(45)
    if len(fixed) < 45:
        raise BitstreamError(f"truncated header: stream ends after {len(fixed)} bytes")
    return fixed + source.read(int.from_bytes(fixed[43:45], "big") + 2)


def _wav_stream_header(sample_rate: int, frames: int | None) -> bytes:
    """Header of a mono 16-bit PCM WAV stream; sizes 0xFFFFFFFF when the length is unknown or
    does not fit the 32-bit size fields (the streaming-WAV convention readers accept)."""
    if frames is not None and 36 + 2 * frames > 0xFFFFFFFF:
        frames = None
    data = 0xFFFFFFFF if frames is None else 2 * frames
    riff = 0xFFFFFFFF if frames is None else 36 + data
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, 2 * sample_rate, 2, 16)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data)


def _decompress_stream(args: argparse.Namespace, fmt: str) -> int:
    import soundfile as sf

    from bitstream.header import COLUMN_SECONDS, read_header
    from semanticodec.audio import SAMPLE_RATE
    from semanticodec.streaming import StreamingDecoder, StreamResampler

    with contextlib.ExitStack() as stack:
        source = sys.stdin.buffer if args.input == "-" else stack.enter_context(open(args.input, "rb"))
        head = _read_header_bytes(source)
        header = read_header(io.BytesIO(head).read)
        codec = _codec(args, header.token_rate, header.semantic_vocab, header.model_id, ddim_steps=args.steps, cfg_scale=args.cfg_scale, eta=args.eta, seed=args.seed)
        decoder = StreamingDecoder(
            codec, on_damage=lambda d: print(f"{args.input}: {d} (concealed)", file=sys.stderr), concealment=args.concealment
        )
        out_rate, resampler, limit = SAMPLE_RATE, None, None
        if header.sample_count:
            limit = -(-header.sample_count * SAMPLE_RATE // header.sample_rate)
            if args.original_rate and header.sample_rate != SAMPLE_RATE:
                out_rate, resampler, limit = header.sample_rate, StreamResampler(SAMPLE_RATE, header.sample_rate), header.sample_count
        file = stack.enter_context(_open_output(args))
        if args.output == "-":
            file.write(_wav_stream_header(out_rate, limit))
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
        return EXIT_CONCEALED
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
