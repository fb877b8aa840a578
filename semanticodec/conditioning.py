"""Padding rules, token windows and the decoder's cross-attention context.

Time bookkeeping at 16 kHz: one AudioMAE patch column is 0.16 s (16 fbank frames, 2560
samples) and holds 8 / 4 / 2 tokens at 100 / 50 / 25 tokens/s (frequency patches, stacked by
K = 1 / 2 / 4). At 25 tokens/s two columns are stacked, so one 4-token step spans 0.32 s. An
encoder window is 10.24 s = 1024 fbank frames = 512 / K tokens.

Padding marker: the official code marks conditioning rows that lie after the end of the audio
in a window by setting them to -1 (``x * 0 - 1``), both on the LSTM input of the acoustic
branch and on the decoder context; ``mark_padding`` does that for a batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

PE_DIM = 192
"""Width of the sinusoidal positional encoding appended to the decoder context."""

PADDING_STD = 1e-7
"""An fbank frame whose unbiased std over its mel bins is at most this is padding."""


def padding_cutoff(fbank_window: Tensor) -> Tensor:
    """Fraction of each window that holds audio, by the official padding detector.

    A frame is padding when ``torch.std`` (unbiased) over its mel bins is <= 1e-7; zero
    padding and digital silence both qualify. The cutoff is (last non-padding frame + 1)
    divided by the number of frames, so silence inside the audio does not count; a window
    of padding only gives 0.

    Args:
        fbank_window: ``[B, T, M]`` normalised Kaldi fbank (T = 1024 frames, M = 128 bins).

    Returns:
        ``[B]`` float64 cutoffs in [0, 1] (e.g. 276 / 1024 = 0.26953125).
    """
    if not isinstance(fbank_window, Tensor) or fbank_window.ndim != 3:
        raise ValueError(f"fbank_window must be a [B, T, M] tensor, got {describe(fbank_window)}")
    if not fbank_window.is_floating_point():
        raise ValueError(f"fbank_window must be floating point, got {fbank_window.dtype}")
    batch, frames, bins = fbank_window.shape
    if frames < 1 or bins < 2:
        raise ValueError(f"fbank_window needs T >= 1 frames and M >= 2 bins, got {tuple(fbank_window.shape)}")
    is_padding = torch.std(fbank_window, dim=-1) <= PADDING_STD
    frame_end = torch.arange(1, frames + 1, device=fbank_window.device)
    last_end = torch.where(is_padding, 0, frame_end).amax(dim=-1)
    return last_end.to(torch.float64) / frames


def valid_tokens(cutoff: Tensor | Sequence[float] | float, n_tokens: int) -> Tensor:
    """Tokens of a window that hold audio: ``ceil(n_tokens * cutoff)`` (float64, as official).

    Args:
        cutoff: ``[B]`` fractions from :func:`padding_cutoff` (or a float for B = 1).
        n_tokens: tokens per window N (512 / K).

    Returns:
        ``[B]`` int64 valid lengths in [0, N]; rows from this index on are padding.
    """
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"n_tokens must be a positive int, got {n_tokens!r}")
    c = torch.as_tensor(cutoff, dtype=torch.float64)
    if c.ndim > 1:
        raise ValueError(f"cutoff must be a scalar or [B], got shape {tuple(c.shape)}")
    if not bool(((c >= 0) & (c <= 1)).all()):
        raise ValueError(f"cutoff must lie in [0, 1], got {c.tolist()}")
    return torch.ceil(n_tokens * c.reshape(-1)).to(torch.int64)


def mark_padding(x: Tensor, valid_len: Tensor | Sequence[int] | None) -> Tensor:
    """Copy of ``x [B, N, C]`` with rows ``n >= valid_len[b]`` set to -1 (the padding marker).

    ``valid_len`` is ``[B]`` (int) or None (every row valid, ``x`` returned unchanged).
    """
    if not isinstance(x, Tensor) or x.ndim != 3:
        raise ValueError(f"x must be a [B, N, C] tensor, got {describe(x)}")
    lengths = _check_lengths(valid_len, x.shape[0], x.shape[1], x.device)
    if lengths is None:
        return x
    padded = torch.arange(x.shape[1], device=x.device) >= lengths[:, None]
    return x.masked_fill(padded[:, :, None], -1.0)


def _check_lengths(
    valid_len: Tensor | Sequence[int] | None, batch: int, n_tokens: int, device: torch.device
) -> Tensor | None:
    """``valid_len`` as a ``[B]`` int64 tensor on ``device``, checked to lie in [0, N]."""
    if valid_len is None:
        return None
    lengths = torch.as_tensor(valid_len, device=device)
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(f"valid_len must hold integers, got {lengths.dtype}")
    if lengths.shape != (batch,):
        raise ValueError(f"valid_len must have shape [{batch}] (one per batch item), got {tuple(lengths.shape)}")
    if bool(((lengths < 0) | (lengths > n_tokens)).any()):
        raise ValueError(f"valid_len must lie in [0, {n_tokens}], got {lengths.tolist()}")
    return lengths.to(torch.int64)


def positional_encoding(seq_len: int = 512, dim: int = PE_DIM) -> Tensor:
    """The official sinusoidal table ``[seq_len, dim]``, float32, computed as the official code
    does: bit-exact with its tables on the same kind of CPU (torch's vectorised float32 sin/cos
    differ between CPUs by up to ~2e-5 at the largest angles, for the official code alike).

    Computed in float32 as the official ``PositionalEncoding``: frequencies
    ``exp(arange(0, dim, 2) * -(ln 10000 / dim))``, angles ``position * frequency``, sin on the
    even channels and cos on the odd ones. (The float32 angles differ from a float64
    evaluation by up to 2.4e-5 at position 511; parity needs the float32 version.)
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 0:
        raise ValueError(f"seq_len must be a non-negative int, got {seq_len!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
        raise ValueError(f"dim must be a positive even int, got {dim!r}")
    position = torch.arange(seq_len, dtype=torch.float32).unsqueeze(1)
    scale = torch.tensor(-(math.log(10000.0) / dim), dtype=torch.float32)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * scale)
    angle = position * frequency
    pe = torch.empty(seq_len, dim, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe


def decoder_context(
    acoustic_vectors: Tensor, semantic_vectors: Tensor, valid_len: Tensor | Sequence[int] | None, pe_dim: int = PE_DIM
) -> Tensor:
    """Cross-attention context of the diffusion decoder, ``[B, N, 2D + pe_dim]``.

    ``[acoustic ‖ semantic]`` (acoustic first, as official) with rows ``>= valid_len`` set to
    -1, followed by the positional encoding of positions 0..N-1 (never marked).

    Args:
        acoustic_vectors: ``[B, N, D]`` acoustic codebook rows of the tokens.
        semantic_vectors: ``[B, N, D]`` semantic k-means centroids of the tokens.
        valid_len: ``[B]`` int tokens holding audio per window (None: all N).
        pe_dim: width of the positional encoding (``ModelConfig.pe_dim``, official 192).
    """
    check_vector_pair(acoustic_vectors, semantic_vectors, "acoustic_vectors", "semantic_vectors")
    features = mark_padding(torch.cat([acoustic_vectors, semantic_vectors], dim=-1), valid_len)
    batch, n_tokens, _ = features.shape
    pe = positional_encoding(n_tokens, pe_dim).to(device=features.device, dtype=features.dtype)
    return torch.cat([features, pe.expand(batch, n_tokens, pe_dim)], dim=-1)


def unconditional_context(
    batch: int,
    n_tokens: int,
    feature_dim: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    pe_dim: int = PE_DIM,
) -> Tensor:
    """The classifier-free-guidance context ``[B, N, 2D + pe_dim]``: zeros(2D) ‖ positional encoding."""
    for name, value in (("batch", batch), ("n_tokens", n_tokens), ("feature_dim", feature_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    pe = positional_encoding(n_tokens, pe_dim).to(device=device, dtype=dtype)
    zeros = torch.zeros(batch, n_tokens, 2 * feature_dim, device=device, dtype=dtype)
    return torch.cat([zeros, pe.expand(batch, n_tokens, pe_dim)], dim=-1)


def check_vector_pair(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    for name, t in ((name_a, a), (name_b, b)):
        if not isinstance(t, Tensor) or t.ndim != 3:
            raise ValueError(f"{name} must be a [B, N, D] tensor, got {describe(t)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {t.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} must have the same shape")


def describe(x: object) -> str:
    """Shape of a tensor, or the type name of anything else, for error messages."""
    if isinstance(x, Tensor):
        return f"shape {tuple(x.shape)}"
    return type(x).__name__
