"""The 10.24 s windows: audio into encoder windows, tokens into decode windows, and decoded
windows back into one waveform.

Encoder windows are 163 840 samples (1024 fbank frames); a long input is zero-padded to whole
windows (:func:`encoder_windows`), and a stream is cut window by window (:func:`window_fbank`).
The encoder output of an input is trimmed to :func:`target_token_length` pairs.

Decode windows are 512 / K token pairs, starting every 480 / K pairs (:func:`split_windows`);
window w is sampled with its own noise generator (:func:`window_generator`) and its 10.24 s of
audio is cross-faded into the output at w x 9.6 s (:class:`OverlapAdd`; the official code's
drifting joins are :func:`overlap_add_official`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from semanticodec.conditioning import describe
from semanticodec.constants import (
    COLUMN_SAMPLES,
    FRAMES_PER_WINDOW,
    HOP_SAMPLES,
    OVERLAP_RATIO,
    OVERLAP_SAMPLES,
    PAIRS_PER_COLUMN,
    PATCH_SECONDS,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    WINDOW_TOKENS_TR100,
    stack_factor,
    token_samples,
)
from semanticodec.deprecation import renamed_keywords
from semanticodec.features import FBANK_FRAME_LENGTH, FBANK_FRAME_SHIFT, audiomae_fbank, audioset_normalise, kaldi_fbank

Compat = Literal["default", "official"]


LOOKAHEAD_SAMPLES = FBANK_FRAME_LENGTH - FBANK_FRAME_SHIFT
"""Samples after a window that its last fbank frame reads (240 = 15 ms)."""


def encoder_windows(wav: np.ndarray, compat: Compat = "default") -> Tensor:
    """Normalised fbank windows ``[W, 1024, 128]`` of 16 kHz mono audio ``[N]``, zero-padded
    to whole 10.24 s windows (official: one more window at exact multiples)."""
    n = len(wav)
    count = n // WINDOW_SAMPLES + 1 if compat == "official" else -(-n // WINDOW_SAMPLES)
    padded = torch.zeros(1, count * WINDOW_SAMPLES)
    padded[0, :n] = torch.from_numpy(wav)
    return audiomae_fbank(padded, count * FRAMES_PER_WINDOW)[0].view(count, FRAMES_PER_WINDOW, -1)


def window_fbank(samples: np.ndarray | Tensor, last: bool) -> Tensor:
    """Normalised AudioMAE fbank ``[1024, 128]`` of one encoder window.

    ``samples``: the window's 163 840 samples followed by the 240 samples after it (16 kHz;
    ``last``: the final window, zero-padded, without the 240 samples, whose two last frames are
    the zero frames the offline fbank appends).
    """
    x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    expected = WINDOW_SAMPLES if last else WINDOW_SAMPLES + LOOKAHEAD_SAMPLES
    if x.shape != (expected,):
        raise ValueError(f"window needs {expected} samples, got shape {tuple(x.shape)}")
    fbank = kaldi_fbank(x[None])[0]
    if last:
        fbank = torch.cat([fbank, torch.zeros(FRAMES_PER_WINDOW - fbank.shape[0], fbank.shape[1])])
    return audioset_normalise(fbank)


@renamed_keywords("target_token_length", num_samples="sample_count")
def target_token_length(sample_count: int, token_rate: int, compat: bool = False) -> int:
    """Tokens kept for ``sample_count`` samples of 16 kHz audio (the encoder output is trimmed to this).

    - ``compat=True``, the official rounding: ``dur = n / 16000``; ``dur += 0.16 - dur % 0.16``
      in float64; ``ceil(8 * dur / 0.16 / K)``. It adds a whole extra 0.16 s column when the
      duration is already a multiple of 0.16 s (up to float rounding: 20.0 s gives 1000
      tokens at 100 tokens/s, 10.24 s gives 520), and at 25 tokens/s an odd number of 0.16 s
      columns keeps only the 2 lower-frequency tokens of the last 0.32 s step.
    - ``compat=False`` (default), fixed: the duration is rounded up to whole token columns,
      exactly in integers, with no extra column: ``ceil(n / 2560) * 8 / K`` at 100 and 50
      tokens/s and ``ceil(n / 5120) * 4`` at 25 tokens/s (a column there is 0.32 s).

    Both give 656 tokens for 13 s (208000 samples) at 100 tokens/s.
    """
    if isinstance(sample_count, bool) or not isinstance(sample_count, int) or sample_count < 1:
        raise ValueError(f"sample_count must be a positive int, got {sample_count!r}")
    stack_factor(token_rate)
    if compat:
        duration = sample_count / SAMPLE_RATE
        duration = duration + (PATCH_SECONDS - duration % PATCH_SECONDS)
        return math.ceil(8 * duration / PATCH_SECONDS / (100 / token_rate))
    return -(-sample_count // COLUMN_SAMPLES[token_rate]) * PAIRS_PER_COLUMN[token_rate]


def split_windows(tokens: Tensor, window: int = WINDOW_TOKENS_TR100, overlap_ratio: float = OVERLAP_RATIO) -> tuple[Tensor, Tensor]:
    """Cut a token sequence into the official overlapping decode windows.

    As ``long_token_split_window``: overlap ``int(window * overlap_ratio)``, hop
    ``window - overlap``; full windows are taken ``while start + window < T`` and the rest
    ``tokens[:, start:]`` (1..window tokens) is the last, partial window. With the defaults a
    window is 512 / K tokens = 10.24 s of audio and window w starts at w * 9.6 s (hop 480 / K
    tokens, overlap 32 / K tokens = 0.64 s), which is where its 10.24 s of decoded audio is
    cross-faded in. For T = 656 at 100 tokens/s: tokens [0:512] and [480:656].

    Args:
        tokens: ``[B, T, 2]`` int64 (semantic, acoustic), T >= 1.
        window: tokens per window (512 / K).
        overlap_ratio: overlap as a fraction of the window.

    Returns:
        ``(windows, valid_len)``: ``windows [B, W, window, 2]`` int64 with the partial last
        window zero-filled after its valid tokens, and ``valid_len [W]`` int64 (the same
        for every batch item). The decoder context of window w must mark rows
        ``>= valid_len[w]`` as padding (as the official -1 rows).
    """
    if not isinstance(tokens, Tensor) or tokens.ndim != 3 or tokens.shape[-1] != 2:
        raise ValueError(f"tokens must be a [B, T, 2] tensor, got {describe(tokens)}")
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise ValueError(f"tokens must be integers, got {tokens.dtype}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    hop = window_hop(window, overlap_ratio)
    if not 0 < hop <= window:
        raise ValueError(f"overlap_ratio must give 0 <= overlap < window, got {overlap_ratio!r} ({window - hop} tokens)")
    batch, length, _ = tokens.shape
    if length < 1:
        raise ValueError("tokens is empty (T = 0)")
    starts = [0]
    while starts[-1] + window < length:
        starts.append(starts[-1] + hop)
    padded = torch.zeros(batch, starts[-1] + window, 2, dtype=torch.int64, device=tokens.device)
    padded[:, :length] = tokens
    windows = padded.unfold(1, window, hop).permute(0, 1, 3, 2)
    valid_len = torch.tensor([min(window, length - s) for s in starts], dtype=torch.int64, device=tokens.device)
    return windows.contiguous(), valid_len


def window_hop(window: int, overlap_ratio: float = OVERLAP_RATIO) -> int:
    """Token pairs from the start of one decode window of ``window`` pairs to the next (480 / K
    with the defaults): the window minus ``int(window * overlap_ratio)`` overlapping pairs."""
    return window - int(window * overlap_ratio)


def window_generator(seed: int, window: int, item: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """The noise generator of decode window ``window`` of input ``item`` for ``seed``: it draws
    the window's start noise and DDIM noise, so a window's audio does not depend on its batch."""
    digest = hashlib.sha256(f"{seed}/{item}/{window}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@renamed_keywords("join_windows", num_samples="sample_count")
def join_windows(
    waves: Sequence[Tensor], num_tokens: int, token_rate: int, compat: Compat = "default", sample_count: int | None = None
) -> np.ndarray:
    """Cross-fade decode-window waveforms and trim to the output length (float32 ``[N]``).

    Official: the output covers ``num_tokens`` tokens as computed by the official code.
    Default: the tokens' duration, or ``sample_count`` (the input length at 16 kHz) if shorter.
    """
    if compat == "official":
        audio = overlap_add_official(waves)
        end = int(num_tokens / 8 * 16 * 0.01 * (100 / token_rate) * SAMPLE_RATE)
    else:
        audio = overlap_add(waves)
        end = token_samples(num_tokens, token_rate)
        if sample_count is not None:
            end = min(end, sample_count)
    return audio[:end].numpy()


class OverlapAdd:
    """Linear cross-fade of decode-window waveforms placed every ``hop`` samples (no drift), one
    window at a time: :meth:`push` returns the output samples that are final (up to the next
    window's start), :meth:`finish` the rest. Each window but the last contributes its first
    ``hop + overlap`` samples; ``overlap`` samples are faded."""

    def __init__(self, hop: int = HOP_SAMPLES, overlap: int = OVERLAP_SAMPLES) -> None:
        self.hop, self.overlap = hop, overlap
        self._tail: Tensor | None = None

    def push(self, wave: Tensor) -> Tensor:
        """Add the next window's waveform ``[S]`` (S >= hop + overlap); returns ``[hop]`` samples."""
        wave = wave.reshape(-1)
        head = wave[: self.hop].clone()
        if self._tail is not None:
            ramp = torch.linspace(0, 1, self.overlap, dtype=torch.float64).to(wave.dtype)
            head[: self.overlap] = self._tail[: self.overlap] * ramp.flip(0) + wave[: self.overlap] * ramp
        self._tail = wave[self.hop :]
        return head

    def finish(self) -> Tensor:
        """The last window's samples after its hop (empty when no window was pushed)."""
        tail, self._tail = self._tail, None
        return torch.zeros(0) if tail is None else tail


def overlap_add(waves: Iterable[Tensor], hop: int = HOP_SAMPLES, overlap: int = OVERLAP_SAMPLES) -> Tensor:
    """The waveform of decode windows cross-faded by :class:`OverlapAdd`:
    ``hop * (W - 1) + len(last window)`` samples."""
    joiner = OverlapAdd(hop, overlap)
    parts = [joiner.push(w) for w in waves]
    return torch.cat([*parts, joiner.finish()])


def overlap_add_official(waves: Iterable[Tensor], overlap: int = OVERLAP_SAMPLES) -> Tensor:
    """The official ``overlap_add_waveform``: append each window after a linear cross-fade
    of its first ``overlap`` samples with the tail of the output (the 32 extra vocoder samples
    per window therefore shift later windows)."""
    waves = [w.reshape(-1).clone() for w in waves]
    out = waves[0]
    fade_in = torch.linspace(0, 1, overlap, dtype=torch.float64)
    fade_out = torch.linspace(1, 0, overlap, dtype=torch.float64)
    for w in waves[1:]:
        w[:overlap] = (w[:overlap].double() * fade_in).float()
        out[-overlap:] = (out[-overlap:].double() * fade_out).float()
        out[-overlap:] += w[:overlap]
        out = torch.cat([out, w[overlap:]])
    return out
