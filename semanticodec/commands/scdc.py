"""The ``.scdc`` commands: ``info``, ``pack`` and ``unpack`` (the format alone: no model, no torch)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from semanticodec.atomic import atomic_write, check_output
from semanticodec.bitstream import Header, StreamInfo, encode, read_file, scan
from semanticodec.commands import EXIT_DAMAGED, EXIT_OK, add_entropy_option, deprecated_alias
from semanticodec.constants import ACOUSTIC_VOCAB_SIZE, SAMPLE_RATE, TOKEN_RATES, token_samples
from semanticodec.released import weights_name
from semanticodec.safety import control_character, printable
from semanticodec.tokens import load_token_file

if TYPE_CHECKING:
    from semanticodec.bitstream import EntropyTables


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


def info_record(path: str, info: StreamInfo) -> dict[str, Any]:
    header = info.header
    return {
        "file": path,
        "format": "SCDC",
        "format_version": header.version,
        "token_rate": header.token_rate,
        "pairs_per_second": header.pairs_per_second,
        "semantic_vocab_size": header.semantic_vocab_size,
        "semantic_bits": header.semantic_bits,
        "acoustic_vocab_size": header.acoustic_vocab_size,
        "acoustic_bits": header.acoustic_bits,
        "model_id": header.model_id.hex(),
        "weights": weights_name(header.model_id),
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
        "entropy_tables": None if info.tables is None else info.tables.table_id.hex(),
        "entropy_tables_source": None if info.tables is None else info.tables.source,
        "coded_packets": info.coded_packets,
        "metadata": dict(header.metadata),
        # The previous release's keys, written until the next one:
        "semantic_vocab": header.semantic_vocab_size,
        "acoustic_vocab": header.acoustic_vocab_size,
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
    overhead = record["overhead_percent"]
    size = f"overhead {_fmt(overhead, '.2f', ' %')}"
    if overhead is not None and overhead < 0:
        size = f"{-overhead:.2f} % below nominal"
    lines = [
        ("file", record["file"]),
        ("format", f"SCDC version {record['format_version']}"),
        ("model id", model),
        ("weights", record["weights"]),
        ("token rate", f"{record['token_rate']} tok/s ({record['pairs_per_second']:g} pairs/s)"),
        ("vocabularies", f"semantic {record['semantic_vocab_size']} ({record['semantic_bits']} bit), "
                         f"acoustic {record['acoustic_vocab_size']} ({record['acoustic_bits']} bit)"),
        ("duration", original),
        ("tokens", tokens),
        ("bitrate", f"nominal {record['nominal_bitrate_bps']:.1f} bps, "
                    f"actual {_fmt(record['actual_bitrate_bps'], '.1f', ' bps')} ({record['size_bytes']} bytes, {size})"),
        ("packets", f"{record['packets']} intact; a full packet holds {record['packet_pairs']} pairs "
                    f"({record['packet_columns']} columns, {record['packet_seconds']:.2f} s)"),
        ("entropy", "none: every packet fixed width" if info.tables is None else
                    f"{record['coded_packets']} of {record['packets']} packets range coded with tables "
                    f"{record['entropy_tables']} ({record['entropy_tables_source'] or 'given'})"),
    ]
    lines += [("metadata", f"{key}={value}") for key, value in record["metadata"].items()]
    lines.append(("integrity", "ok" if info.ok else "DAMAGED"))
    lines += [("damage", str(d)) for d in info.damage]
    return "\n".join(f"{name:<13} {printable(value)}" for name, value in lines)


def configure_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the .scdc file ('-' reads standard input)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run_info(args: argparse.Namespace) -> int:
    from semanticodec.entropy_tables import find_tables

    if args.file == "-":
        info = scan(sys.stdin.buffer, find_tables)
    else:
        with open(args.file, "rb") as file:
            info = scan(file, find_tables)
    record = info_record(args.file, info)
    print(json.dumps(record, indent=2) if args.json else _info_text(record, info))
    return EXIT_OK if info.ok else EXIT_DAMAGED


def configure_pack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tokens", help="input .npy: integer tokens [T, 2] (semantic, acoustic) or [1, T, 2]")
    parser.add_argument("output", help="output .scdc file")
    parser.add_argument("--token-rate", type=int, required=True, choices=TOKEN_RATES, help="tokens per second")
    semantic = parser.add_argument("--semantic-vocab-size", type=int, metavar="V", help="semantic vocabulary size (required)")
    deprecated_alias(parser, "--semantic-vocab", semantic)
    acoustic = parser.add_argument(
        "--acoustic-vocab-size", type=int, default=ACOUSTIC_VOCAB_SIZE, metavar="V", help=f"acoustic vocabulary size ({ACOUSTIC_VOCAB_SIZE})"
    )
    deprecated_alias(parser, "--acoustic-vocab", acoustic)
    parser.add_argument("--model-id", type=model_id_arg, default=bytes(16), metavar="HEX",
                        help="32 hex digits identifying the model (default all zeros: unspecified)")
    parser.add_argument("--sample-rate", type=int, default=SAMPLE_RATE, metavar="HZ", help=f"original sample rate ({SAMPLE_RATE})")
    parser.add_argument("--sample-count", type=int, metavar="N",
                        help="original length in samples (default: the duration the tokens cover; 0: unknown)")
    parser.add_argument("--packet-columns", type=int, metavar="N",
                        help="token columns per packet (default 32 at 100 tok/s, 64 at 50 and 25)")
    parser.add_argument("--meta", type=_meta_arg, action="append", default=[], metavar="KEY=VALUE",
                        help="metadata entry (repeatable)")
    add_entropy_option(parser)
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def run_pack(args: argparse.Namespace) -> int:
    if args.semantic_vocab_size is None:
        raise ValueError("pack needs --semantic-vocab-size")
    check_output(args.output, [args.tokens], args.force)
    tokens = load_token_file(args.tokens)
    sample_count = args.sample_count
    if sample_count is None:
        sample_count = token_samples(len(tokens), args.token_rate, args.sample_rate)
    metadata = dict(args.meta)
    if len(metadata) != len(args.meta):
        raise ValueError("a metadata key is given twice")
    header = Header(
        token_rate=args.token_rate, semantic_vocab_size=args.semantic_vocab_size, acoustic_vocab_size=args.acoustic_vocab_size,
        model_id=args.model_id, sample_count=sample_count, sample_rate=args.sample_rate,
        packet_columns=args.packet_columns, metadata=metadata,
    )
    data = encode(tokens, header, _entropy_tables(args, header))
    with atomic_write(args.output, args.force, [args.tokens]) as file:
        file.write(data)
    actual = len(data) * 8 * header.pairs_per_second / max(len(tokens), 1)
    print(f"{args.output}: {len(tokens)} token pairs, {len(data)} bytes, {header.nominal_bitrate:g} bps nominal, "
          f"{actual:.1f} bps actual")
    return EXIT_OK


def _entropy_tables(args: argparse.Namespace, header: Header) -> EntropyTables | None:
    """The entropy tables to write ``header``'s stream with: None with ``--no-entropy`` or when
    the model has none (fixed width)."""
    from semanticodec.entropy_tables import tables_for_model

    if args.no_entropy:
        return None
    return tables_for_model(header.model_id, header.token_rate, header.semantic_vocab_size, header.acoustic_vocab_size)


def configure_unpack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="input .scdc file")
    parser.add_argument("tokens", help="output .npy: int64 tokens [T, 2] (semantic, acoustic)")
    parser.add_argument("--semantic-only", action="store_true",
                        help="write the semantic ids alone, int64 [T] (the acoustic layer is not unpacked)")
    parser.add_argument("--model-id", type=model_id_arg, metavar="HEX",
                        help="refuse a file made by another model (an unspecified model id passes)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def run_unpack(args: argparse.Namespace) -> int:
    from semanticodec.entropy_tables import find_tables

    check_output(args.tokens, [args.input], args.force)
    _, tokens = read_file(args.input, "semantic" if args.semantic_only else "both", args.model_id, find_tables)
    with atomic_write(args.tokens, args.force, [args.input]) as file:
        np.save(file, tokens)
    return EXIT_OK
