"""Guards against hostile files and careless users, shared by the command line and the library.

- :func:`confined`: where a name read from a file (a dataset index, a manifest) may be written
  under an output folder the user named; never outside it, whatever the name says.
- :func:`printable`: text from a file made safe for a terminal (control characters escaped).
- :func:`check_replaceable`: ``--force`` replaces regular files only (not devices, FIFOs, sockets).
- :func:`signals_raise`: SIGTERM (and SIGHUP) raise :class:`Terminated` in the main thread, so
  that cleanup (temporary files) runs as for any exception.
"""

from __future__ import annotations

import os
import signal
import stat
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories escaped on output: controls, format (bidi overrides), surrogates,
private use, unassigned, line and paragraph separators."""


def confined(root: str | os.PathLike[str], name: str) -> Path:
    """``root / name`` with ``name`` made relative and free of ``..``: always inside ``root``.

    A leading ``/`` (or ``~``) and every ``.`` and ``..`` component are dropped, so
    ``/data/a.wav`` and ``../data/a.wav`` both become ``root/data/a.wav``. Raises ValueError
    for a name with no component left or with a NUL character.
    """
    if "\x00" in name:
        raise ValueError(f"file name {printable(name)!r} holds a NUL character")
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", ".", "..", "~")]
    if not parts:
        raise ValueError(f"file name {printable(name)!r} names no file")
    return Path(root).joinpath(*parts)


def printable(text: str) -> str:
    """``text`` with control and format characters (escape sequences, carriage returns, bidi
    overrides) written as ``\\xNN`` / ``\\uNNNN``, so that it cannot drive a terminal."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if not _unsafe(char):
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def control_character(text: str) -> str | None:
    """The first character of ``text`` that :func:`printable` would escape, or None."""
    return next((char for char in text if _unsafe(char)), None)


def check_replaceable(path: str | os.PathLike[str]) -> None:
    """Raise ValueError unless ``path`` is missing, a regular file, or a symlink to one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else (
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        )
        raise ValueError(f"output {path} is {kind}; only a regular file can be replaced")


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM or SIGHUP (not an Exception: only cleanup handles it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def signals_raise() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise :class:`Terminated` (SIGINT raises KeyboardInterrupt
    as usual); the previous handlers come back on exit. Outside the main thread it does nothing."""
    try:
        previous = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
