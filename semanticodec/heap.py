"""The C heap of this process: giving freed memory back to the system (glibc; no-ops elsewhere).

glibc keeps what large temporaries free (the buffer each weight is read into, a stage's
activations) for reuse, and raises its mmap threshold (up to 32 MiB) with every large block
freed, after which such blocks come from the heap and stay with the process. A process that
loads weights and then encodes therefore only grows; for the encoder-only ``compress`` of the
official 100 tokens/s model that was ~90 MiB of its peak (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from functools import cache
from typing import Any

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number of the mmap threshold."""

LEAN_MMAP_THRESHOLD = 1 << 20
"""Bytes from which :func:`return_large_frees` gives each allocation a mapping of its own."""


@cache
def _libc(name: str) -> Callable[..., Any] | None:
    """The C library's function ``name``, or None where it has none (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def release_free_heap() -> None:
    """Hand the pages the C allocator holds free back to the system (glibc ``malloc_trim(0)``,
    about a millisecond); called after loading weights and between the encoder's stages."""
    trim = _libc("malloc_trim")
    if trim is not None:
        trim(0)


def return_large_frees(threshold: int = LEAN_MMAP_THRESHOLD) -> None:
    """From now on give every allocation of ``threshold`` bytes or more a mapping of its own,
    returned to the system when freed (glibc ``mallopt(M_MMAP_THRESHOLD, threshold)``, which
    also stops glibc from raising it). For processes that only encode (the commands that load
    the encoder only: ``compress``, ``tokenize``): their peak memory then follows the live
    tensors; the fresh pages cost little next to the encoder's arithmetic. Also sets
    ``MKL_DISABLE_FAST_MM=1`` (unless set), so that MKL frees its matrix-product buffers after
    each call instead of keeping them (~20 MiB; read when MKL first allocates, so call this
    before any matrix product). Process-wide, so the library itself does not call it."""
    os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")
    mallopt = _libc("mallopt")
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, threshold)
