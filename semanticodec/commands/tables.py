"""The ``learn-tables`` command: entropy tables of a model from its token datasets.

``semanticodec learn-tables TOKENS/ --into MODEL.safetensors`` stores the tables inside a
semanticodec weights file (the bundled model: ``semanticodec/data/default_model.safetensors``,
its weights kept bit for bit); ``-o TABLES.safetensors`` writes a small file of their own
(official models; install it with ``$SEMANTICODEC_TABLES``). See :mod:`semanticodec.entropy_tables`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from semanticodec.commands import EXIT_OK


def configure_learn_tables(parser: argparse.ArgumentParser) -> None:
    from semanticodec.bitstream.tables import CONTEXTS

    parser.add_argument("datasets", nargs="+", help="token dataset folders written by `semanticodec tokenize` (one model)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--into", metavar="MODEL", help="store the tables inside this semanticodec .safetensors weights file")
    target.add_argument("-o", "--output", metavar="FILE", help="write the tables to this .safetensors file of their own")
    parser.add_argument(
        "--contexts", default=",".join(CONTEXTS), metavar="LIST",
        help=f"comma-separated contexts to use (default all: {','.join(CONTEXTS)})",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --output file")


def run_learn_tables(args: argparse.Namespace) -> int:
    from semanticodec.entropy_tables import describe, learn_from_datasets, store_tables

    path = Path(args.into or args.output)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path} must end in .safetensors")
    if args.into and not path.is_file():
        raise FileNotFoundError(f"--into {path}: no such weights file")
    if args.output:
        from semanticodec.atomic import check_output

        check_output(path, args.datasets, args.force)
    started = time.perf_counter()
    tables, hours = learn_from_datasets(args.datasets, [c for c in args.contexts.split(",") if c])
    store_tables(tables, path, into_model=bool(args.into), overwrite=args.force)
    print(f"{path}: entropy tables {describe(tables)}", file=sys.stderr)
    print(
        f"learned from {hours:.2f} h of tokens in {time.perf_counter() - started:.0f} s; "
        f"file {path.stat().st_size / 1e6:.1f} MB",
        file=sys.stderr,
    )
    return EXIT_OK
