"""Codec benchmarks: speed (bench_*.py) and quality against real codecs (``python -m benchmarks.quality``)."""
