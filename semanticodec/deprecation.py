"""Old spellings of the Python API, kept working for one release with a DeprecationWarning.

Dependency free (the bitstream format uses it too). The command line's old option spellings
are :func:`semanticodec.commands.deprecated_alias`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def warn_deprecated(message: str, stacklevel: int = 2) -> None:
    """A DeprecationWarning ``message`` that says the old spelling goes in the next release;
    ``stacklevel`` as in :func:`warnings.warn`, counted from the caller of this function."""
    warnings.warn(f"{message} (the old spelling is removed in the next release)", DeprecationWarning, stacklevel=stacklevel + 1)


def renamed_keywords(owner: str, **renames: str) -> Callable[[F], F]:
    """Decorate a function (or a dataclass's ``__init__``) so that the old keyword names
    ``renames`` (old=new) still work, with a DeprecationWarning; ``owner`` names the function
    in the warning. Passing both spellings is a TypeError."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{owner}() got both {old}= and {new}=")
                    warn_deprecated(f"{owner}({old}=...) is deprecated, use {new}=...", stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def renamed_attribute(owner: str, old: str, new: str) -> property:
    """A read-only property ``old`` that returns attribute ``new``, with a DeprecationWarning."""

    def getter(self: Any) -> Any:
        warn_deprecated(f"{owner}.{old} is deprecated, use {new}", stacklevel=2)
        return getattr(self, new)

    return property(getter, doc=f"Deprecated spelling of :attr:`{new}` (removed in the next release).")
