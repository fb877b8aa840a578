"""The ``semanticodec`` command line: an explicit table of commands, each imported when used.

:data:`COMMANDS` lists every command with the module that implements it (see
:mod:`semanticodec.commands`). ``semanticodec --help`` imports none of them; a command's module
is imported, and its arguments are added, only when that command is named, and the module
imports what the command needs when it runs, so that ``info``, ``pack`` and ``unpack`` start
without torch. :func:`main` turns every user error (ValueError, including BitstreamError, and
OSError such as a missing or existing file) into one line ``semanticodec: error: <message>``
on stderr and status 2, and SIGINT, SIGTERM and SIGHUP into one line and status 128 + the
signal number, after the cleanup of temporary outputs has run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from semanticodec import __version__
from semanticodec.commands import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE
from semanticodec.safety import Terminated, printable, signals_raise

PROG = "semanticodec"


@dataclass(frozen=True)
class Command:
    """A command: its ``module`` defines ``configure_<name>(parser)`` (adds the arguments) and
    ``run_<name>(args)`` (runs it and returns the exit status), ``-`` in the name spelled ``_``."""

    name: str
    help: str
    module: str
    description: str = ""

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def configure(self, parser: argparse.ArgumentParser) -> None:
        name = self.name.replace("-", "_")
        getattr(self.load(), f"configure_{name}")(parser)
        parser.set_defaults(run=getattr(self.load(), f"run_{name}"))


COMMANDS: tuple[Command, ...] = (
    Command("compress", "encode an audio file to a .scdc token stream", "semanticodec.commands.codec"),
    Command("decompress", "decode a .scdc token stream to audio", "semanticodec.commands.codec"),
    Command(
        "info", "show a .scdc file's header, duration, bitrate and integrity", "semanticodec.commands.scdc",
        "Show a .scdc file's header, duration, token rate, vocabularies, bitrate (nominal, and actual: "
        "bytes x 8 / seconds), packet count, the entropy tables in use and integrity. Exit status: 0 "
        "intact, 1 damaged (the report lists the damage), 2 unreadable or usage error.",
    ),
    Command("pack", "pack a .npy token array into a .scdc file", "semanticodec.commands.scdc"),
    Command("unpack", "unpack a .scdc file into a .npy token array", "semanticodec.commands.scdc"),
    Command("convert", "write official checkpoints as one inference-only safetensors file", "semanticodec.commands.codec"),
    Command(
        "download", "fetch official weights from the Hugging Face hub ahead of time", "semanticodec.commands.download",
        "Fetch the official weights of one configuration (--token-rate, --semantic-vocab-size) or of all "
        "(--all) from the Hugging Face hub into its cache ($HF_HOME/hub), verify them and print where they "
        "are. Later runs use them without the network (HF_HUB_OFFLINE=1 or --offline).",
    ),
    Command(
        "tokenize", "encode an audio corpus into a sharded token dataset", "semanticodec.commands.dataset",
        "Encode every audio file of a folder (recursive) or manifest into token shards with an index "
        "(resumable: files already indexed are skipped). Under torchrun each rank takes its share. "
        "Exit status 1 when some files failed (listed at the end and in failures.tsv).",
    ),
    Command("detokenize", "decode token files or a token dataset to audio", "semanticodec.commands.dataset"),
    Command(
        "learn-tables", "learn a model's entropy tables from token datasets", "semanticodec.commands.tables",
        "Count the entropy tables of a model (token statistics per frequency band, previous column, "
        "band below, semantic id, adapted within each packet) from token datasets written by "
        "`semanticodec tokenize`, fit their weights on every 5th file, and store them inside the "
        "model's weights file (--into) or in a file of their own (-o/--output).",
    ),
    Command(
        "kmeans", "train semantic k-means codebooks (train) and extract AudioMAE features for them (features)",
        "semanticodec.kmeans.cli",
    ),
    Command("train", "train a model stage by stage (see `semanticodec train -h`)", "semanticodec.train.cli"),
)


def _named_command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first argument that is not an option), if any."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser: one sub-parser per command, with the arguments of the command that
    ``argv`` names (the others are listed with their help only)."""
    parser = argparse.ArgumentParser(prog=PROG, description="SemantiCodec: ultra-low-bitrate semantic audio codec.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = _named_command(argv)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.description or command.help)
        if command.name == named:
            command.configure(sub)
    return parser


def _error(message: str) -> int:
    print(f"{PROG}: error: {printable(message)}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status: 0 success, 1 damaged input (``info``,
    ``decompress``) or failed files (``tokenize``), 2 user error (argparse usage message, or one
    line ``semanticodec: error: ...``), 141 when standard output is closed early, 130 on Ctrl-C,
    143 on SIGTERM (temporary files removed)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        with signals_raise():
            return _parse_and_run(argv)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated as signalled:
        print(f"{PROG}: stopped by {signalled}", file=sys.stderr)
        return 128 + signalled.signum


def _parse_and_run(argv: list[str]) -> int:
    """:func:`main` without the signals: parse ``argv`` (importing the named command's module)
    and run the command, user errors turned into one line."""
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return args.run(args)
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
