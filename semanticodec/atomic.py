"""Atomic output files: write a temporary file beside the target, then rename it over.

A reader never sees a half-written output, a failed write leaves no trace (and leaves an
existing target untouched), and an input is never overwritten by its own output. Logs that
grow line by line are extended with :func:`append_synced` (one write, synced);
:func:`sha256_file` checks that a file arrived whole.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from semanticodec.safety import check_replaceable


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (), overwrite: bool = False
) -> None:
    """Refuse an output path before any work is done.

    Raises ValueError when ``path`` is one of ``inputs`` (same file, through links too),
    IsADirectoryError when it is a directory, FileNotFoundError when its directory does not
    exist, FileExistsError when it exists and ``overwrite`` is false, ValueError when it is not
    a regular file (a device, FIFO or socket: never replaced).
    """
    target = Path(path)
    for source in inputs:
        if _same_file(target, Path(source)):
            raise ValueError(f"output {target} is the input file {source}; refusing to overwrite the input")
    if target.is_dir():
        raise IsADirectoryError(f"output {target} is a directory")
    parent = target.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output directory {parent} does not exist")
    if not overwrite and (target.exists() or target.is_symlink()):
        raise FileExistsError(f"output {target} already exists")
    check_replaceable(target)


def _create_temp(target: Path) -> tuple[int, Path]:
    """Create a new empty file beside ``target`` with default permissions (umask applies)."""
    while True:
        candidate = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), candidate
        except FileExistsError:
            continue


@contextmanager
def atomic_path(
    path: str | os.PathLike[str], overwrite: bool = False, inputs: Iterable[str | os.PathLike[str]] = ()
) -> Iterator[Path]:
    """Yield the path of a new empty file beside ``path`` for a writer that takes a file name;
    on normal exit it is synced and renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The checks
    of ``check_output`` run first. A replaced file keeps its permission bits.
    """
    target = Path(path)
    check_output(target, inputs, overwrite)
    fd, temp = _create_temp(target)
    os.close(fd)
    try:
        yield temp
        if target.exists():
            os.chmod(temp, stat.S_IMODE(target.stat().st_mode))
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not overwrite and (target.exists() or target.is_symlink()):
            raise FileExistsError(f"output {target} already exists")
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(
    path: str | os.PathLike[str], overwrite: bool = False, inputs: Iterable[str | os.PathLike[str]] = ()
) -> Iterator[BinaryIO]:
    """Yield a binary file; on normal exit it is synced and renamed to ``path`` (as
    :func:`atomic_path`: an exception leaves ``path`` as it was)."""
    with atomic_path(path, overwrite, inputs) as temp, open(temp, "wb") as file:
        yield file


def append_synced(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` to ``path`` (created if absent) in one write and sync it to disk."""
    with open(path, "a", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
