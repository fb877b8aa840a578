"""Without a writable place for numba's cache (no writable HOME or package folder) the
bitstream still imports and works, compiled without the cache (issue 14 item 10)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import numba.core.caching as caching
caching.CacheImpl._locator_classes = []  # what numba finds with nothing writable
import numpy as np
from bitstream import Header, decode, encode
tokens = np.arange(40).reshape(20, 2)
assert (decode(encode(tokens, Header(100, 100, 100)))[1] == tokens).all()
from semanticodec.cli import main
print("ok")
"""


def test_bitstream_works_without_a_writable_numba_cache() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
