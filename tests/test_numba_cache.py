"""Without a writable place for numba's cache (no writable HOME or package folder) the numba
kernels (the range coder's, the fill weights') still compile, without the cache, and give the same results (issue 14 item 10:
semanticodec.jit); the command line runs as well."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.fill import fill

SCRIPT = """
import sys

import numba
import numba.core.caching as caching
import numpy as np

caching.CacheImpl._locator_classes = []  # what numba finds with nothing writable
try:
    numba.njit(cache=True)(lambda: 0)
except RuntimeError:
    pass
else:
    raise SystemExit("numba still found a place for its cache")

from semanticodec.jit import njit


@njit(nogil=True)
def total(x):
    s = 0
    for v in x:
        s += v
    return s


assert total(np.arange(10)) == 45
from benchmarks.fill import fill
from semanticodec.cli import main

assert main(["info", "/nonexistent.scdc"]) == 2
sys.path.insert(0, "tests")
from toy_tables import TOY_MODEL, structured_tokens, toy_tables

from semanticodec.bitstream import Header, decode, encode

tokens = structured_tokens(np.random.default_rng(0), 300, 64, 128)
data = encode(tokens, Header(100, 64, 128, model_id=TOY_MODEL), toy_tables())  # the range coder's kernels
assert data[4] == 2 and (decode(data, tables=toy_tables())[1] == tokens).all()
np.save(sys.stdout.buffer, fill("unet.weight", (3, 5)))
"""


def test_kernels_compile_without_a_writable_numba_cache() -> None:
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    np.testing.assert_array_equal(np.load(io.BytesIO(result.stdout)), fill("unet.weight", (3, 5)))
