"""numba compilation that works where numba finds no writable place for its on-disk cache.

``numba.njit(cache=True)`` raises "cannot cache function ...: no locator available" when
neither the package folder nor a cache folder under HOME (or ``NUMBA_CACHE_DIR``) is
writable, so a read-only install with no writable HOME could not run a numba kernel at all.
:func:`njit` uses the cache where it can and otherwise compiles once per process. Every
numba kernel of the package and its benchmarks is compiled through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])


def njit(**options: Any) -> Callable[[F], F]:
    """Decorator: ``numba.njit(cache=True, **options)``, or ``numba.njit(**options)`` where no
    cache can be written (``options`` as for ``numba.njit``, e.g. ``nogil=True``)."""

    def compile_(function: F) -> F:
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
            return numba.njit(**options)(function)

    return compile_
