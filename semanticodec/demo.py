"""``python -m semanticodec.demo [OUT]``: the main job on the bundled example clip, as the command
line runs it. It compresses ``semanticodec/data/example.flac`` (7.1 s, 16 kHz) into a ``.scdc``
file, shows the file's header, decompresses it and unpacks its tokens, printing each
``semanticodec`` command before running it. It uses the small model shipped in the package
(``--model small``: no download) and writes only into OUT (default: ``semanticodec-demo`` in the
temporary folder), replacing the files of an earlier demo there."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from semanticodec.cli import main as semanticodec
from semanticodec.commands import EXIT_USAGE

PROG = "python -m semanticodec.demo"


def run(out: Path) -> int:
    """Run the four commands with their outputs in the existing folder ``out``: ``example.scdc``,
    ``example.wav`` and ``example_tokens.npy`` (int64, shape (pairs, 2): semantic and acoustic ids).
    Return 0, or the exit status of the first command that fails (the later ones do not run)."""
    scdc, wav, tokens = out / "example.scdc", out / "example.wav", out / "example_tokens.npy"
    with resources.as_file(resources.files("semanticodec") / "data" / "example.flac") as clip:
        commands = (
            ["compress", str(clip), str(scdc), "--model", "small", "--force"],
            ["info", str(scdc)],
            ["decompress", str(scdc), str(wav), "--model", "small", "--force"],
            ["unpack", str(scdc), str(tokens), "--force"],
        )
        for argv in commands:
            print("$ semanticodec " + shlex.join(argv), flush=True)
            status = semanticodec(argv)
            if status:
                return status
    print(f"tokens: {np.load(tokens).shape} token pairs (semantic, acoustic)")
    print(f"decoded audio: {wav}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process arguments) and :func:`run` the demo; 2 with one line
    on standard error when OUT cannot be created."""
    parser = argparse.ArgumentParser(prog=PROG, description="Compress, inspect, decompress and unpack the bundled example clip with the small model.")
    default = Path(tempfile.gettempdir()) / "semanticodec-demo"
    parser.add_argument("out", nargs="?", type=Path, default=default, help=f"output folder (default: {default})")
    args = parser.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"{PROG}: error: cannot create {args.out}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return run(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
