"""Hostile-input costs (issue 14): resynchronisation through sync-like junk, resampling at odd rates.

    python benchmarks/bench_hostile.py [--megabytes 8]

1. A header followed by junk made of one repeated sync-like pattern, read by ``semanticodec.bitstream.scan``
   (a resilient reader): CPU seconds and MB/s of the vectorised candidate check against the
   one-candidate-at-a-time scan (the reader with the plain ``find`` of the sync marker), the
   baseline on a tenth of the data.
2. Resampling 0.1 s of noise to 16 kHz: seconds and peak traced memory of the bounded ratio
   against the exact ratio (at 99 991 Hz; the exact filter at 767 999 Hz needs 98 million taps).
"""

from __future__ import annotations

import argparse
import io
import time
import tracemalloc
from fractions import Fraction
from unittest import mock

import numpy as np

from semanticodec import audio
from semanticodec.bitstream import Header, scan, stream
from semanticodec.bitstream.packet import SYNC

PATTERNS = ("d3c30000", "d3c30001d3c3", "d3c3800000")


def _resync(megabytes: float, pattern: str, vectorised: bool) -> float:
    junk = bytes.fromhex(pattern)
    data = Header(100, 16384).to_bytes() + junk * int(megabytes * 1e6 / len(junk))
    plain = lambda data, *_: bytes(data).find(SYNC)  # noqa: E731  (the old scan)
    with mock.patch.object(stream, "next_candidate", stream.next_candidate if vectorised else plain):
        start = time.process_time()
        scan(io.BytesIO(data))
        return len(data) / 1e6 / (time.process_time() - start)


def _resample(rate: int, exact: bool) -> tuple[float, float]:
    x = np.random.default_rng(0).standard_normal(rate // 10).astype(np.float32)
    audio._lowpass.cache_clear()
    ratio = Fraction(16000, rate)
    exact_ratio = lambda orig, target: (ratio.numerator, ratio.denominator)  # noqa: E731
    with mock.patch.object(audio, "resample_ratio", exact_ratio if exact else audio.resample_ratio):
        tracemalloc.start()
        start = time.perf_counter()
        audio.resample(x, rate)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return seconds, peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=8.0)
    args = parser.parse_args()
    print("| junk pattern | vectorised MB/s | one at a time MB/s | speed-up |\n|---|---:|---:|---:|")
    for pattern in PATTERNS:
        fast, slow = _resync(args.megabytes, pattern, True), _resync(args.megabytes / 10, pattern, False)
        print(f"| `{pattern}` | {fast:.1f} | {slow:.2f} | {fast / slow:.0f}x |")
    print("\n| rate (0.1 s to 16 kHz) | ratio | seconds | peak MB |\n|---|---|---:|---:|")
    for rate, exact in ((44100, True), (99_991, True), (99_991, False), (767_999, False)):
        up, down = (Fraction(16000, rate).numerator, Fraction(16000, rate).denominator) if exact else audio.resample_ratio(rate, 16000)
        seconds, peak = _resample(rate, exact)
        print(f"| {rate} Hz | {'exact' if exact else 'bounded'} {up}/{down} | {seconds:.2f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
