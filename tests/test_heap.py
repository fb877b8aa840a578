"""semanticodec.heap: freed memory goes back to the system (glibc; skipped elsewhere)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from semanticodec.heap import _libc, release_free_heap

MIB = 1 << 20

pytestmark = pytest.mark.skipif(_libc("mallopt") is None, reason="needs glibc (mallopt, malloc_trim)")


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


RETURN_LARGE_FREES = """
import os
from semanticodec.heap import return_large_frees
MIB = 1 << 20
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
large = bytearray(24 * MIB)
del large  # a large free: glibc raises its mmap threshold above 8 MiB
return_large_frees()
before = rss()
block = b"\\x01" * (8 * MIB)  # written, so resident
grown = rss() - before
del block
print(os.environ["MKL_DISABLE_FAST_MM"], grown, rss() - before)
"""


def test_return_large_frees() -> None:
    """After a 24 MiB block is freed glibc serves 8 MiB blocks from its heap and keeps them when
    freed; after return_large_frees each is a mapping of its own, gone when freed. In a fresh
    process: what earlier tests did to the allocator (threads, arenas) must not decide it."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_DISABLE_FAST_MM"}
    out = subprocess.run([sys.executable, "-c", RETURN_LARGE_FREES], env=env, capture_output=True, text=True, check=True)
    flag, grown, left = out.stdout.split()
    assert flag == "1"
    assert int(grown) > 7 * MIB
    assert int(left) < MIB


def test_release_free_heap() -> None:
    """Small blocks freed in the middle of the heap stay resident until malloc_trim."""
    blocks = [bytearray(4000) for _ in range(8000)]  # 32 MB of small heap blocks
    keep = blocks[-1]
    del blocks[:-1]  # freed below the last one, which keeps the heap from shrinking at its top
    before = _rss()
    release_free_heap()
    assert before - _rss() > 16 * MIB
    del keep
