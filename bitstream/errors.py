"""The single exception type raised for malformed .scdc data."""

from __future__ import annotations


class BitstreamError(ValueError):
    """A .scdc stream is malformed: bad magic, unsupported version, truncation, checksum
    mismatch, out-of-range field or token id. The message names the problem and, for packet
    problems, the packet index and byte offset."""
