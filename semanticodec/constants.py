"""The codec's fixed numbers: sample rate, token rates, the token grid and the 10.24 s windows.

This module imports nothing: the bitstream, the k-means tools, the command line and the model
code all take these numbers from here.

Time at 16 kHz: an AudioMAE patch column is 0.16 s (16 fbank frames of 10 ms, 2560 samples)
and holds 8 frequency patches. A token pair stacks K = 100 / token_rate patches (1, 2, 4), so
the token grid advances in *columns* of 8 / 4 / 4 pairs lasting 0.16 / 0.16 / 0.32 s at
100 / 50 / 25 tok/s (at 25 tok/s two patch columns are stacked). The encoder and the decoder
work on windows of 10.24 s = 1024 fbank frames = 512 / K pairs; decode windows overlap by
0.64 s (1 / 16 of a window).
"""

from __future__ import annotations

SAMPLE_RATE = 16000
"""The codec's sample rate in Hz."""

MAX_SAMPLE_RATE = 768_000
"""Highest input sample rate in Hz that audio reading and the ``.scdc`` header accept."""

TOKEN_RATES = (100, 50, 25)
"""Supported token rates in tokens per second, semantic and acoustic ids counted (pairs/s x 2)."""

ACOUSTIC_VOCAB_SIZE = 8192
"""Acoustic vocabulary size of the released models."""

PATCH_SECONDS = 0.16
"""Duration of one AudioMAE patch column in seconds."""

PATCH_SAMPLES = 2560
"""Samples in one AudioMAE patch column (0.16 s at 16 kHz)."""

PAIRS_PER_COLUMN = {100: 8, 50: 4, 25: 4}
"""Token pairs in one token column (the time step of the token grid) per token rate."""

COLUMN_SAMPLES = {100: 2560, 50: 2560, 25: 5120}
"""Samples (16 kHz) in one token column per token rate: one patch column, two at 25 tok/s."""

COLUMN_SECONDS = {rate: samples / SAMPLE_RATE for rate, samples in COLUMN_SAMPLES.items()}
"""Duration of one token column in seconds per token rate (0.16, 0.16, 0.32)."""

WINDOW_SAMPLES = 163840
"""Samples in one 10.24 s encoder or decoder window."""

FRAMES_PER_WINDOW = 1024
"""Fbank frames (10 ms) in one window."""

WINDOW_TOKENS_TR100 = 512
"""Token pairs per window at 100 tok/s; ``512 // K`` at the other rates."""

OVERLAP_RATIO = 0.0625
"""Decode-window overlap as a fraction of the window (0.64 s of 10.24 s)."""

OVERLAP_SAMPLES = int(WINDOW_SAMPLES * OVERLAP_RATIO)
"""Cross-fade length between decode windows (10240 samples, 0.64 s)."""

HOP_SAMPLES = WINDOW_SAMPLES - OVERLAP_SAMPLES
"""Start-to-start distance of decode windows (153600 samples, 9.6 s)."""

CONCEALMENTS = ("inpaint", "padding")
"""How a decoder conceals lost token pairs (:mod:`semanticodec.concealment`); the first is the default."""


def stack_factor(token_rate: int) -> int:
    """K = 100 / token_rate: AudioMAE patches stacked per token pair (1, 2 or 4)."""
    if token_rate not in TOKEN_RATES:
        raise ValueError(f"token_rate must be one of {TOKEN_RATES}, got {token_rate!r}")
    return 100 // token_rate


def token_samples(pairs: int, token_rate: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Samples at ``sample_rate`` covered by ``pairs`` token pairs: ``pairs * 2 * sample_rate /
    token_rate``, rounded to the nearest integer (exact at 16 kHz)."""
    return (2 * pairs * sample_rate + token_rate // 2) // token_rate
