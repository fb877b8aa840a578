"""The ``semanticodec`` command line.

Each sub-command is a ``Command`` (name, help, a function adding its arguments to an
argparse sub-parser, and a handler returning the exit status) kept in ``COMMANDS``.
Another module adds sub-commands by calling ``register`` at import; ``main`` turns
every user error (ValueError, including BitstreamError, and OSError such as a missing or
existing file) into one line ``semanticodec: error: <message>`` on stderr and status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from bitstream import VERSION, Header, StreamInfo, encode, read_file, scan
from semanticodec.atomic import atomic_write, check_output
from semanticodec.safety import Terminated, control_character, load_npy, printable, signals_raise

PROG = "semanticodec"
EXIT_OK = 0
EXIT_DAMAGED = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (SIGINT); SIGTERM gives 143 and SIGHUP 129 (128 + the signal)."""


@dataclass(frozen=True)
class Command:
    """A sub-command: ``configure`` adds its arguments, ``run`` executes it and returns the exit status."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    """Add a sub-command; a name can be registered once."""
    if command.name in COMMANDS:
        raise ValueError(f"sub-command {command.name!r} is already registered")
    COMMANDS[command.name] = command
    return command


def model_id_arg(text: str) -> bytes:
    """argparse type: 32 hexadecimal digits -> 16 bytes."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 16:
        raise argparse.ArgumentTypeError(f"model id must be 32 hexadecimal digits (16 bytes), got {text!r}")
    return value


def _meta_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"metadata must be KEY=VALUE, got {text!r}")
    if (char := control_character(value)) is not None:
        raise argparse.ArgumentTypeError(f"metadata value of {key!r} holds the control character {char!r}")
    return key, value


def load_tokens(path: str | Path) -> np.ndarray:
    """Tokens ``[T, 2]`` from a .npy file holding an integer array ``[T, 2]`` or ``[1, T, 2]``.

    The .npy header is checked against the file size before anything is allocated; no
    pickles are loaded.
    """
    array = load_npy(path)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{path}: tokens must be integers, got dtype {array.dtype}")
    shape = array.shape
    if not (len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)) or shape[-1] != 2:
        raise ValueError(f"{path}: tokens must have shape [T, 2] or [1, T, 2], got {list(shape)}")
    return array.reshape(-1, 2)


def _info_record(path: str, info: StreamInfo) -> dict[str, Any]:
    header = info.header
    return {
        "file": path,
        "format": "SCDC",
        "format_version": VERSION,
        "token_rate": header.token_rate,
        "pairs_per_second": header.pairs_per_second,
        "semantic_vocab": header.semantic_vocab,
        "semantic_bits": header.semantic_bits,
        "acoustic_vocab": header.acoustic_vocab,
        "acoustic_bits": header.acoustic_bits,
        "model_id": header.model_id.hex(),
        "sample_rate": header.sample_rate,
        "sample_count": header.sample_count,
        "duration_seconds": header.duration,
        "token_pairs": info.pairs,
        "token_seconds": info.token_seconds,
        "packet_columns": header.packet_columns,
        "packet_pairs": header.packet_pairs,
        "packet_seconds": header.packet_seconds,
        "packets": info.packets,
        "size_bytes": info.size,
        "header_bytes": header.size,
        "nominal_bitrate_bps": header.nominal_bitrate,
        "actual_bitrate_bps": info.actual_bitrate,
        "overhead_percent": None if info.overhead is None else 100 * info.overhead,
        "metadata": dict(header.metadata),
        "integrity": {
            "ok": info.ok,
            "damage": [
                {"offset": d.offset, "first_packet": d.first_packet, "lost_packets": d.lost_packets, "reason": d.reason}
                for d in info.damage
            ],
        },
    }


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "unknown" if value is None else f"{value:{spec}}{unit}"


def _info_text(record: dict[str, Any], info: StreamInfo) -> str:
    model = record["model_id"] + (" (unspecified)" if not any(info.header.model_id) else "")
    samples = record["sample_count"]
    original = "unknown"
    if samples:
        original = f"{record['duration_seconds']:.3f} s ({samples} samples at {record['sample_rate']} Hz)"
    tokens = "unknown (final packet missing)"
    if record["token_pairs"] is not None:
        tokens = f"{record['token_pairs']} pairs, {record['token_seconds']:.3f} s"
    lines = [
        ("file", record["file"]),
        ("format", f"SCDC version {record['format_version']}"),
        ("model id", model),
        ("token rate", f"{record['token_rate']} tok/s ({record['pairs_per_second']:g} pairs/s)"),
        ("vocabularies", f"semantic {record['semantic_vocab']} ({record['semantic_bits']} bit), "
                         f"acoustic {record['acoustic_vocab']} ({record['acoustic_bits']} bit)"),
        ("duration", original),
        ("tokens", tokens),
        ("bitrate", f"nominal {record['nominal_bitrate_bps']:.1f} bps, "
                    f"actual {_fmt(record['actual_bitrate_bps'], '.1f', ' bps')} ({record['size_bytes']} bytes, "
                    f"overhead {_fmt(record['overhead_percent'], '.2f', ' %')})"),
        ("packets", f"{record['packets']} intact; a full packet holds {record['packet_pairs']} pairs "
                    f"({record['packet_columns']} columns, {record['packet_seconds']:.2f} s)"),
    ]
    lines += [("metadata", f"{key}={value}") for key, value in record["metadata"].items()]
    lines.append(("integrity", "ok" if info.ok else "DAMAGED"))
    lines += [("damage", str(d)) for d in info.damage]
    return "\n".join(f"{name:<13} {printable(value)}" for name, value in lines)


def _configure_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the .scdc file ('-' reads standard input)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _run_info(args: argparse.Namespace) -> int:
    if args.file == "-":
        info = scan(sys.stdin.buffer)
    else:
        with open(args.file, "rb") as file:
            info = scan(file)
    record = _info_record(args.file, info)
    print(json.dumps(record, indent=2) if args.json else _info_text(record, info))
    return EXIT_OK if info.ok else EXIT_DAMAGED


def _configure_pack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tokens", help="input .npy: integer tokens [T, 2] (semantic, acoustic) or [1, T, 2]")
    parser.add_argument("output", help="output .scdc file")
    parser.add_argument("--token-rate", type=int, required=True, choices=(25, 50, 100), help="tokens per second")
    parser.add_argument("--semantic-vocab", type=int, required=True, metavar="V", help="semantic vocabulary size")
    parser.add_argument("--acoustic-vocab", type=int, default=8192, metavar="V", help="acoustic vocabulary size (8192)")
    parser.add_argument("--model-id", type=model_id_arg, default=bytes(16), metavar="HEX",
                        help="32 hex digits identifying the model (default all zeros: unspecified)")
    parser.add_argument("--sample-rate", type=int, default=16000, metavar="HZ", help="original sample rate (16000)")
    parser.add_argument("--sample-count", type=int, metavar="N",
                        help="original length in samples (default: the duration the tokens cover; 0: unknown)")
    parser.add_argument("--packet-columns", type=int, metavar="N",
                        help="token columns per packet (default 32 at 100 tok/s, 64 at 50 and 25)")
    parser.add_argument("--meta", type=_meta_arg, action="append", default=[], metavar="KEY=VALUE",
                        help="metadata entry (repeatable)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def _run_pack(args: argparse.Namespace) -> int:
    check_output(args.output, [args.tokens], args.force)
    tokens = load_tokens(args.tokens)
    sample_count = args.sample_count
    if sample_count is None:
        sample_count = (2 * len(tokens) * args.sample_rate + args.token_rate // 2) // args.token_rate
    metadata = dict(args.meta)
    if len(metadata) != len(args.meta):
        raise ValueError("a metadata key is given twice")
    header = Header(
        token_rate=args.token_rate, semantic_vocab=args.semantic_vocab, acoustic_vocab=args.acoustic_vocab,
        model_id=args.model_id, sample_count=sample_count, sample_rate=args.sample_rate,
        packet_columns=args.packet_columns, metadata=metadata,
    )
    data = encode(tokens, header)
    with atomic_write(args.output, args.force, [args.tokens]) as file:
        file.write(data)
    print(f"{args.output}: {len(tokens)} token pairs, {len(data)} bytes, {header.nominal_bitrate:g} bps nominal")
    return EXIT_OK


def _configure_unpack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="input .scdc file")
    parser.add_argument("tokens", help="output .npy: int64 tokens [T, 2] (semantic, acoustic)")
    parser.add_argument("--semantic-only", action="store_true",
                        help="write the semantic ids alone, int64 [T] (the acoustic layer is not unpacked)")
    parser.add_argument("--model-id", type=model_id_arg, metavar="HEX",
                        help="refuse a file made by another model (an unspecified model id passes)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def _run_unpack(args: argparse.Namespace) -> int:
    check_output(args.tokens, [args.input], args.force)
    _, tokens = read_file(args.input, "semantic" if args.semantic_only else "both", args.model_id)
    with atomic_write(args.tokens, args.force, [args.input]) as file:
        np.save(file, tokens)
    return EXIT_OK


register(Command(
    "info", "show a .scdc file's header, duration, bitrate and integrity", _configure_info, _run_info,
    "Show a .scdc file's header, duration, token rate, vocabularies, bitrate (nominal, and actual: "
    "bytes x 8 / seconds), packet count and integrity. Exit status: 0 intact, 1 damaged (the "
    "report lists the damage), 2 unreadable or usage error.",
))
register(Command("pack", "pack a .npy token array into a .scdc file", _configure_pack, _run_pack))
register(Command("unpack", "unpack a .scdc file into a .npy token array", _configure_unpack, _run_unpack))


def _package_version() -> str:
    try:
        return version("semanticodec")
    except PackageNotFoundError:
        return "unknown"


def _configure_kmeans(parser: argparse.ArgumentParser) -> None:
    from kmeans.cli import add_features_parser, add_train_parser

    verbs = parser.add_subparsers(dest="kmeans_command", required=True, metavar="VERB")
    add_train_parser(verbs)
    add_features_parser(verbs)


register(
    Command(
        "kmeans",
        "train semantic k-means codebooks (train) and extract AudioMAE features for them (features)",
        _configure_kmeans,
        lambda args: args.func(args),
    )
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per registered command."""
    import semanticodec.commands  # noqa: F401  (registers compress, decompress, convert)
    import semanticodec.token_commands  # noqa: F401  (registers tokenize, detokenize)
    import semanticodec.train.cli  # noqa: F401  (registers train)

    parser = argparse.ArgumentParser(prog=PROG, description="SemantiCodec: ultra-low-bitrate semantic audio codec.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        sub = commands.add_parser(command.name, help=command.help, description=command.description or command.help)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def _error(message: str) -> int:
    print(f"{PROG}: error: {printable(message)}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status: 0 success, 1 damaged input (``info``),
    2 user error (argparse usage message, or one line ``semanticodec: error: ...``), 141 when
    standard output is closed early, 130 on Ctrl-C, 143 on SIGTERM (temporary files removed)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        with signals_raise():
            return args.run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated as signalled:
        print(f"{PROG}: stopped by {signalled}", file=sys.stderr)
        return 128 + signalled.signum
    except BrokenPipeError:
        # The reader of our output went away (``| head``): stop quietly, as shells expect.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except FileExistsError as error:
        return _error(f"{error} (use --force to replace it)")
    except OSError as error:
        if error.filename is not None and error.strerror:
            return _error(f"{error.filename}: {error.strerror}")
        return _error(str(error))
    except ValueError as error:
        return _error(str(error))
