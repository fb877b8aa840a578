"""The handlers of the ``semanticodec`` command line, one module per group of commands.

:mod:`semanticodec.cli` lists the commands and imports a command's module only when it is used;
a module implements ``configure_<command>(parser)`` and ``run_<command>(args) -> exit status``
for each of its commands, and imports what a command needs when it runs. This package holds
what they share: the exit statuses, :func:`deprecated_alias` and :func:`add_entropy_option`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK = 0
EXIT_DAMAGED = 1
"""Damaged input that was reported (``info``) or concealed (``decompress``), or failed files (``tokenize``)."""
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (SIGINT); SIGTERM gives 143 and SIGHUP 129 (128 + the signal)."""


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores into the new option's destination, with a warning."""

    def __init__(self, option_strings: Sequence[str], dest: str, replacement: str, **kwargs: Any) -> None:
        self.replacement = replacement
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        print(
            f"{parser.prog}: warning: {option_string} is deprecated and will be removed in the next release; use {self.replacement}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, new: argparse.Action) -> None:
    """Accept ``old`` (hidden from ``--help``) as the option ``new`` returned by ``add_argument``,
    printing a deprecation warning on stderr when it is used."""
    alias = parser.add_argument(
        old, dest=new.dest, action=_DeprecatedAlias, replacement=new.option_strings[-1], nargs=new.nargs,
        const=new.const, choices=new.choices, metavar=new.metavar, help=argparse.SUPPRESS,
    )
    alias.type = new.type  # None (the default) is not a value add_argument's type= is declared to take


def add_entropy_option(parser: argparse.ArgumentParser) -> None:
    """``--no-entropy``: write fixed-width packets (format version 1) instead of range coding
    them with the model's entropy tables."""
    parser.add_argument(
        "--no-entropy", action="store_true",
        help="fixed-width packets (format version 1); default: range coded with the model's entropy tables where smaller",
    )
