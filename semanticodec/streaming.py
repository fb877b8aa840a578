"""Streaming encode and decode: audio chunks → ``.scdc`` packets → audio chunks, in bounded memory.

Encoder modes (:class:`StreamingEncoder`):

- ``"exact"``: every 10.24 s encoder window is encoded as soon as its samples and the 240
  samples after it (the last two fbank frames of a window reach into the next one) have
  arrived, so the tokens are those of offline encoding. The offline fbank subtracts the mean of
  the whole padded signal; the Kaldi fbank removes each frame's DC anyway, so that mean changes
  the features only by float rounding. The streaming encoder subtracts no mean (it cannot know
  the global one). Algorithmic latency: one window plus 15 ms (10.255 s).
- ``"low_latency"``: every ``latency`` seconds (a whole number of token steps, 0.16 s; 0.32 s
  at 25 tok/s) one encoder window is run over up to ``context`` seconds of past audio, the new
  block and ``lookahead`` seconds of future audio, followed by zero padding (which the encoder
  detects and marks as padding, as at the end of a file); the tokens of the new block are
  emitted. Algorithmic latency ``latency + lookahead``; tokens differ from offline encoding
  (the window sees less context, and the bidirectional LSTM less future).

:class:`StreamingDecoder` takes the bytes of a stream as they arrive and returns audio as soon
as it is final: decode window w (512 / K tokens, starting every 480 / K tokens) is sampled
when its tokens are in, with the same per-window seeded noise as :meth:`SemantiCodec.decode`,
and cross-faded as :func:`semanticodec.codec.overlap_add`; the result equals offline decoding
of the same stream. Lost or corrupt packets (found by the resilient bitstream reader) are
concealed (``concealment``):

- ``"padding"``: their token rows are marked as padding (-1) in the decoder context, the
  marker the model was trained with for rows without audio (the gap decodes as near silence);
- ``"inpaint"`` (default): the window is first sampled as with ``"padding"``; then the latent
  frames of the gap are sampled again by diffusion inpainting — the frames around the gap
  are held at the first pass's latent (noised to each step's level), the gap's context rows
  are left unknown (the classifier-free-guidance null rows) and the model fills the gap to fit
  the audio around it. Outside the gap the output equals ``"padding"``; a damaged window
  costs two samplings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import signal
from torch import Tensor

from bitstream import Damage, Header, StreamReader, StreamWriter
from semanticodec.audio import SAMPLE_RATE, _lowpass, check_sample_rate, resample_ratio
from semanticodec.codec import HOP_SAMPLES, OVERLAP_SAMPLES, WINDOW_SAMPLES, SemantiCodec, window_generator
from semanticodec.conditioning import COLUMN_SAMPLES, target_token_length, token_step
from semanticodec.features import AUDIOSET_MEAN, AUDIOSET_STD, FBANK_FRAME_LENGTH, FBANK_FRAME_SHIFT, kaldi_fbank

EncoderMode = Literal["exact", "low_latency"]
Concealment = Literal["inpaint", "padding"]

LOOKAHEAD_SAMPLES = FBANK_FRAME_LENGTH - FBANK_FRAME_SHIFT
"""Samples after a window that its last fbank frame reads (240 = 15 ms)."""

FRAMES_PER_WINDOW = WINDOW_SAMPLES // FBANK_FRAME_SHIFT

MAX_CONCEALED_SECONDS = 60.0
"""Concealment budget of :class:`StreamingDecoder`: a stream may lack at most this many seconds
of tokens more than it holds (missing packets cost diffusion; a header alone cannot buy hours)."""


class StreamResampler:
    """Chunked band-limited resampling to 16 kHz whose output equals :func:`semanticodec.audio.resample`
    of the whole signal (same polyphase filter, no delay); keeps only the filter's history."""

    def __init__(self, orig_sr: int, target_sr: int = SAMPLE_RATE) -> None:
        check_sample_rate(orig_sr)
        check_sample_rate(target_sr)
        self.up, self.down = resample_ratio(orig_sr, target_sr)
        self.identity = orig_sr == target_sr
        if not self.identity:
            taps = _lowpass(self.up, self.down) * self.up
            half = (len(taps) - 1) // 2
            pre_pad = self.down - half % self.down
            self._taps = np.concatenate([np.zeros(pre_pad), taps])
            self._skip = (half + pre_pad) // self.down
        self._buffer = np.zeros(0)
        self._start = 0
        self._done = 0
        self._received = 0

    def push(self, x: np.ndarray, final: bool = False) -> np.ndarray:
        """Resample the next samples ``[n]``; returns the output samples that are now final (float32)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        self._received += len(x)
        if self.identity:
            return x.astype(np.float32)
        self._buffer = np.concatenate([self._buffer, x])
        end = self._received
        total = -(-end * self.up // self.down) if final else None
        # Full-signal output index J reads inputs i with 0 <= J * down - i * up < len(taps).
        last_j = (total + self._skip - 1) if final else (end * self.up - 1) // self.down
        first_j = self._done + self._skip
        if last_j < first_j:
            return np.zeros(0, np.float32)
        y = signal.upfirdn(self._taps, self._buffer, self.up, self.down)
        offset = self._start * self.up // self.down
        out = y[first_j - offset : last_j + 1 - offset]
        self._done += len(out)
        keep_from = max(0, ((self._done + self._skip) * self.down - len(self._taps)) // self.up)
        keep_from -= keep_from % self.down
        if keep_from > self._start:
            self._buffer = self._buffer[keep_from - self._start :]
            self._start = keep_from
        return out.astype(np.float32)


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
    return (fbank - AUDIOSET_MEAN) / (AUDIOSET_STD * 2)


class _ByteSink:
    """File-like object collecting what a StreamWriter writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


@dataclass(frozen=True)
class LowLatencyConfig:
    """Low-latency encoder timing in seconds: ``latency`` (block length, a multiple of the token
    step), ``lookahead`` (future audio seen, rounded up to the fbank frame shift), ``context``
    (past audio in each window); block + lookahead + context must fit in 10.24 s."""

    latency: float = 0.64
    lookahead: float = 0.32
    context: float = 8.0

    @classmethod
    def fitted(cls, latency: float, lookahead: float = 0.32, max_context: float = 8.0) -> LowLatencyConfig:
        """The longest context up to ``max_context`` seconds that fits one window with the block
        and the look-ahead."""
        room = WINDOW_SAMPLES / SAMPLE_RATE - latency - lookahead
        return cls(latency, lookahead, max(0.0, min(max_context, room)))


class StreamingEncoder:
    """Audio chunks in, ``.scdc`` bytes out, packets emitted as soon as their tokens are final.

    Args:
        codec: the codec (its model and device are used).
        sample_rate: rate of the pushed audio in Hz (resampled to 16 kHz on the fly).
        mode: ``"exact"`` or ``"low_latency"`` (see the module docstring).
        low_latency: timing of the low-latency mode.
        sample_count: length of the input at ``sample_rate`` if known in advance (written to
            the header; 0 = unknown, the decoder then trims to the tokens' duration).
        packet_columns: token columns per packet (None: the format's default; 1 for low
            latency gives a packet per 0.16 s column).
    """

    def __init__(
        self,
        codec: SemantiCodec,
        sample_rate: int = SAMPLE_RATE,
        mode: EncoderMode = "exact",
        low_latency: LowLatencyConfig | None = None,
        sample_count: int = 0,
        packet_columns: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if mode not in ("exact", "low_latency"):
            raise ValueError(f"mode must be 'exact' or 'low_latency', got {mode!r}")
        if codec.compat != "default":
            raise ValueError("streaming needs a codec with compat='default' (the official windowing is not streamable)")
        if sample_count < 0:
            raise ValueError(f"sample_count must be >= 0, got {sample_count}")
        check_sample_rate(sample_rate)
        self.codec = codec
        self.mode = mode
        self.sample_rate = int(sample_rate)
        config = codec.config
        k = config.stack_factor
        self._step_samples = COLUMN_SAMPLES * (2 if k == 4 else 1)
        self._tokens_per_step = config.tokens_per_window * self._step_samples // WINDOW_SAMPLES
        if mode == "low_latency":
            ll = low_latency or LowLatencyConfig()
            self._block = round(ll.latency * SAMPLE_RATE)
            if self._block < self._step_samples or self._block % self._step_samples:
                raise ValueError(
                    f"latency must be a positive multiple of {self._step_samples / SAMPLE_RATE} s, got {ll.latency}"
                )
            if ll.lookahead < 0 or ll.context < 0:
                raise ValueError(f"lookahead and context must be >= 0, got {ll.lookahead} and {ll.context}")
            self._lookahead = -(-round(ll.lookahead * SAMPLE_RATE) // FBANK_FRAME_SHIFT) * FBANK_FRAME_SHIFT
            steps = round(ll.context * SAMPLE_RATE) // self._step_samples
            self._context = steps * self._step_samples
            if self._context + self._block + self._lookahead > WINDOW_SAMPLES:
                raise ValueError("latency + lookahead + context must not exceed 10.24 s")
        self._resampler = StreamResampler(self.sample_rate)
        self._audio = np.zeros(0, np.float32)
        self._audio_start = 0
        self._next = 0
        self._received = 0
        self._sink = _ByteSink()
        header = Header(
            token_rate=config.token_rate,
            semantic_vocab=config.semantic_vocab_size,
            acoustic_vocab=config.acoustic_vocab_size,
            model_id=codec.model_id,
            sample_count=int(sample_count),
            sample_rate=self.sample_rate,
            packet_columns=packet_columns,
            metadata=metadata or {},
        )
        self._writer = StreamWriter(self._sink, header)
        self._sample_count = int(sample_count)
        self.finished = False

    @property
    def header(self) -> Header:
        return self._writer.header

    @property
    def samples_received(self) -> int:
        """Samples pushed so far, at ``sample_rate``."""
        return self._received

    @property
    def buffered_samples(self) -> int:
        """16 kHz samples held (at most one window plus one pushed chunk, whatever the input length)."""
        return len(self._audio)

    @property
    def latency_seconds(self) -> float:
        """Algorithmic latency: audio that must arrive after a sample before its token is emitted."""
        if self.mode == "exact":
            return (WINDOW_SAMPLES + LOOKAHEAD_SAMPLES) / SAMPLE_RATE
        return (self._block + self._lookahead) / SAMPLE_RATE

    @torch.inference_mode()
    def push(self, chunk: np.ndarray | Tensor) -> bytes:
        """Add audio ``[n]`` or ``[C, n]`` (float in [-1, 1] or integer PCM) at ``sample_rate``;
        returns the stream bytes now final (the header with the first call)."""
        if self.finished:
            raise ValueError("push after finish")
        mono = _mono(chunk)
        self._received += len(mono)
        self._append(self._resampler.push(mono))
        self._encode_ready(final=False)
        return self._sink.take()

    @torch.inference_mode()
    def finish(self) -> bytes:
        """Encode the rest and return the remaining bytes (ending with the final packet)."""
        if self.finished:
            raise ValueError("finish called twice")
        if self._received == 0:
            raise ValueError("no audio was pushed")
        if self._sample_count and self._sample_count != self._received:
            raise ValueError(f"sample_count {self._sample_count} given, {self._received} samples pushed")
        self._append(self._resampler.push(np.zeros(0), final=True))
        self._encode_ready(final=True)
        self._writer.close()
        self.finished = True
        return self._sink.take()

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._audio = np.concatenate([self._audio, samples])

    @property
    def _end(self) -> int:
        return self._audio_start + len(self._audio)

    def _slice(self, start: int, stop: int) -> np.ndarray:
        """16 kHz samples [start, stop), zeros outside what has been received."""
        out = np.zeros(stop - start, np.float32)
        lo, hi = max(start, self._audio_start), min(stop, self._end)
        if hi > lo:
            out[lo - start : hi - start] = self._audio[lo - self._audio_start : hi - self._audio_start]
        return out

    def _drop_before(self, position: int) -> None:
        if position > self._audio_start:
            self._audio = self._audio[position - self._audio_start :]
            self._audio_start = position

    def _encode_ready(self, final: bool) -> None:
        if self.mode == "exact":
            self._encode_exact(final)
        else:
            self._encode_low_latency(final)

    def _encode_exact(self, final: bool) -> None:
        total = self._end
        while True:
            start = self._next
            if final:
                if start >= total:
                    break
                last = start + WINDOW_SAMPLES >= total
            else:
                if start + WINDOW_SAMPLES + LOOKAHEAD_SAMPLES > total:
                    break
                last = False
            stop = start + WINDOW_SAMPLES + (0 if last else LOOKAHEAD_SAMPLES)
            fbank = window_fbank(self._slice(start, stop), last)
            ids = self.codec.model.encode_windows(fbank[None].to(self.codec.device))[0].cpu().numpy()
            keep = len(ids)
            if last:
                keep = target_token_length(total, self.codec.config.token_rate) - start // WINDOW_SAMPLES * len(ids)
            self._writer.write(ids[:keep].astype(np.int64))
            self._next = start + WINDOW_SAMPLES
            self._drop_before(self._next)

    def _encode_low_latency(self, final: bool) -> None:
        total = self._end
        step = self._step_samples
        while True:
            start = self._next
            if start >= total and final:
                break
            if not final and start + self._block + self._lookahead > total:
                break
            window_start = max(0, start - self._context)
            audio_stop = min(start + self._block + self._lookahead, total)
            samples = self._slice(window_start, window_start + WINDOW_SAMPLES)
            samples[audio_stop - window_start :] = 0.0
            fbank = window_fbank(samples, last=True)
            ids = self.codec.model.encode_windows(fbank[None].to(self.codec.device))[0].cpu().numpy()
            first = (start - window_start) // step * self._tokens_per_step
            block_end = min(start + self._block, total)
            steps = -(-(block_end - start) // step)
            self._writer.write(ids[first : first + steps * self._tokens_per_step].astype(np.int64))
            self._next = start + self._block
            self._drop_before(max(0, self._next - self._context))


def _mono(chunk: np.ndarray | Tensor) -> np.ndarray:
    """A pushed chunk as float32 mono ``[n]`` (channels averaged; integer PCM scaled to [-1, 1])."""
    if hasattr(chunk, "detach"):
        chunk = chunk.detach().cpu().numpy()
    x = np.asarray(chunk)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"audio chunk must hold numbers, got dtype {x.dtype}")
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[0] > 64):
        raise ValueError(f"audio chunk must be [samples] or [channels, samples] (<= 64 channels), got shape {x.shape}")
    if x.dtype.kind in "iu":
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("audio chunk contains NaN or infinite samples")
    if x.ndim == 2:
        x = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    return x


class _NeedMore(Exception):
    """The pushed bytes end inside a header or packet."""


class _PushedBytes:
    """Read side of the bytes pushed so far; raises _NeedMore instead of reporting end of stream."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ended = False

    def read1(self, n: int) -> bytes:
        if not self.data:
            if self.ended:
                return b""
            raise _NeedMore
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    read = read1


class StreamingDecoder:
    """``.scdc`` bytes in, 16 kHz float32 audio out, as soon as each part is final.

    The codec's ``seed`` must be set (per-window noise makes the output deterministic and equal
    to :meth:`SemantiCodec.decode` of the same stream). Damaged or missing packets are skipped
    (``damage`` lists them) and their tokens concealed (see the module docstring).

    Args:
        codec: the codec (model, device, DDIM steps, guidance, η, seed).
        on_damage: called with each :class:`bitstream.Damage` as it is found.
        concealment: ``"inpaint"`` (diffusion inpainting of the gap) or ``"padding"``.
    """

    def __init__(
        self,
        codec: SemantiCodec,
        on_damage: Callable[[Damage], None] | None = None,
        concealment: Concealment = "inpaint",
    ) -> None:
        if concealment not in ("inpaint", "padding"):
            raise ValueError(f"concealment must be 'inpaint' or 'padding', got {concealment!r}")
        if codec.seed is None:
            raise ValueError("StreamingDecoder needs a codec with a seed (deterministic per-window noise)")
        if codec.compat != "default":
            raise ValueError("streaming needs a codec with compat='default' (the official windowing is not streamable)")
        self.codec = codec
        self.concealment = concealment
        self.header: Header | None = None
        self.damage: list[Damage] = []
        self.lost_pairs = 0
        self.finished = False
        self._on_damage = on_damage
        self._input = _PushedBytes()
        self._reader: StreamReader | None = None
        n = codec.config.tokens_per_window
        self._window_tokens = n
        self._hop_tokens = n - int(n * 0.0625)
        self._tokens = np.zeros((0, 2), np.int64)
        self._missing = np.zeros(0, bool)
        self._tokens_start = 0
        self._received_end = 0
        self._window = 0
        self._pending: Tensor | None = None
        self._emitted = 0
        self._limit: int | None = None

    @property
    def samples_emitted(self) -> int:
        """Audio samples returned so far."""
        return self._emitted

    @property
    def buffered_pairs(self) -> int:
        """Token pairs held (at most one window plus one packet, whatever the stream length)."""
        return len(self._tokens)

    @torch.inference_mode()
    def push(self, data: bytes) -> np.ndarray:
        """Add stream bytes; returns the audio samples now final (possibly none)."""
        if self.finished:
            raise ValueError("push after finish")
        self._input.data += data
        return self._run()

    @torch.inference_mode()
    def finish(self) -> np.ndarray:
        """Declare the end of the bytes; returns the rest of the audio."""
        if self.finished:
            raise ValueError("finish called twice")
        self._input.ended = True
        out = [self._run()]
        total = self._reader.total_pairs
        if total is None:  # final packet missing: conceal at most the last two packets' worth
            total = self._received_end
            if self.header.sample_count and total > self.lost_pairs:
                claimed = target_token_length(self._limit, self.header.token_rate)
                total = max(total, min(claimed, total + 2 * self.header.packet_pairs))
            self.lost_pairs += total - self._received_end
            self._check_budget(total)
        if total == 0:
            raise ValueError("the stream holds no tokens")
        token_end = total * 2 * SAMPLE_RATE // self.header.token_rate
        self._limit = token_end if self._limit is None else min(self._limit, token_end)
        self._grow(total)
        out.append(self._decode_ready(total))
        self.finished = True
        return np.concatenate(out)

    def _run(self) -> np.ndarray:
        saved = bytes(self._input.data) if self._reader is None else b""
        try:
            if self._reader is None:
                self._reader = StreamReader(self._input, resilient=True, on_damage=self._damaged)
                self._start(self._reader.header)
            for packet in self._reader:
                self._add(packet.start, packet.tokens)
        except _NeedMore:
            if self._reader is None:
                self._input.data[:0] = saved
        return self._decode_ready(None)

    def _start(self, header: Header) -> None:
        config = self.codec.config
        if header.token_rate != config.token_rate or header.semantic_vocab != config.semantic_vocab_size:
            raise ValueError(
                f"stream is {header.token_rate} tok/s with semantic vocabulary {header.semantic_vocab}; "
                f"the model is {config.token_rate} tok/s, {config.semantic_vocab_size}"
            )
        if header.acoustic_vocab != config.acoustic_vocab_size:
            raise ValueError(f"acoustic vocabulary {header.acoustic_vocab} != the model's {config.acoustic_vocab_size}")
        if header.model_id not in (self.codec.model_id, bytes(16)):
            raise ValueError(f"stream was made by another model (id {header.model_id.hex()} != {self.codec.model_id.hex()})")
        self.header = header
        if header.sample_count:
            self._limit = math.ceil(header.sample_count * SAMPLE_RATE / header.sample_rate)

    def _damaged(self, damage: Damage) -> None:
        self.damage.append(damage)
        if self._on_damage is not None:
            self._on_damage(damage)

    def _check_budget(self, end: int) -> None:
        """ValueError when more of pairs ``[0, end)`` are missing than MAX_CONCEALED_SECONDS beyond those received."""
        rate = self.header.pairs_per_second
        if self.lost_pairs > end - self.lost_pairs + MAX_CONCEALED_SECONDS * rate:
            raise ValueError(
                f"{self.lost_pairs / rate:.1f} s of tokens are missing but only {(end - self.lost_pairs) / rate:.1f} s "
                f"received: more than {MAX_CONCEALED_SECONDS:g} s beyond that is not concealed"
            )

    def _grow(self, end: int) -> None:
        """Extend the token buffer to pair ``end``; new rows are missing until a packet fills them."""
        have = self._tokens_start + len(self._tokens)
        if end > have:
            self._tokens = np.concatenate([self._tokens, np.zeros((end - have, 2), np.int64)])
            self._missing = np.concatenate([self._missing, np.ones(end - have, bool)])

    def _add(self, start: int, tokens: np.ndarray) -> None:
        if start > self._received_end:
            self.lost_pairs += start - self._received_end
            self._check_budget(start)
        self._grow(start + len(tokens))
        lo = start - self._tokens_start
        self._tokens[lo : lo + len(tokens)] = tokens
        self._missing[lo : lo + len(tokens)] = False
        self._received_end = start + len(tokens)

    def _decode_ready(self, total: int | None) -> np.ndarray:
        """Decode every window whose tokens are known (``total``: the stream's pair count, once ended).

        Window w starts at pair w * hop and exists when w = 0 or window w - 1 ends before
        ``total`` (as :func:`split_windows`); before the end it is decoded once all its pairs
        are in (it is then a full window, and the window before it is not the last).
        """
        out = []
        n, hop = self._window_tokens, self._hop_tokens
        while True:
            start = self._window * hop
            if total is None:
                if self._received_end < start + n:
                    break
            elif self._window > 0 and start - hop + n >= total:
                break
            end = start + n if total is None else min(start + n, total)
            out.append(self._decode_window(start, end))
            self._window += 1
            self._drop_tokens(self._window * hop)
        if total is not None and self._pending is not None:
            out.append(self._emit(self._pending))
            self._pending = None
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _decode_window(self, start: int, end: int) -> np.ndarray:
        """Sample one window, cross-fade its start with the previous window's tail and return the
        samples now final (up to the next window's start); the rest waits in ``_pending``."""
        n = self._window_tokens
        lo = start - self._tokens_start
        tok = np.zeros((n, 2), np.int64)
        tok[: end - start] = self._tokens[lo : lo + end - start]
        missing = np.zeros(n, bool)
        missing[: end - start] = self._missing[lo : lo + end - start]
        wave = self._sample(torch.from_numpy(tok), end - start, torch.from_numpy(missing)).float().cpu()
        head = wave[:HOP_SAMPLES].clone()
        if self._window > 0:
            ramp = _ramp(wave.dtype)
            head[:OVERLAP_SAMPLES] = self._pending[:OVERLAP_SAMPLES] * ramp.flip(0) + wave[:OVERLAP_SAMPLES] * ramp
        self._pending = wave[HOP_SAMPLES:]
        return self._emit(head)

    def _sample(self, tokens: Tensor, valid: int, missing: Tensor) -> Tensor:
        """Waveform ``[163872]`` of one window; missing rows are concealed as ``self.concealment`` says."""
        codec, model = self.codec, self.codec.model
        device = codec.device
        gen = [window_generator(codec.seed, self._window, device=device)]
        tok = tokens[None].to(device)
        valid_len = torch.tensor([valid], device=device)
        if not bool(missing.any()):
            return model.decode_windows(tok, valid_len, codec.ddim_steps, codec.cfg_scale, codec.eta, generators=gen)[0]
        cond, uncond = model.context(tok, valid_len)
        width = 2 * codec.config.feature_dim
        rows = missing.to(device)[None, :, None]
        padded = cond.clone()
        padded[..., :width] = cond[..., :width].masked_fill(rows, -1.0)
        shape = model.latent_shape(1)
        x_T = torch.randn((1, *shape[1:]), generator=gen[0], device=gen[0].device).to(device)
        options = {"eta": codec.eta, "guidance_scale": codec.cfg_scale}
        latent = model.sampler.sample(model.unet, x_T, padded, uncond, codec.ddim_steps, generator=gen, **options)
        if self.concealment == "inpaint":
            unknown = cond.clone()
            unknown[..., :width] = cond[..., :width].masked_fill(rows, 0.0)
            known = ~self._latent_gap(missing, latent.shape[2]).to(device)[None, None, :, None]
            latent = model.sampler.sample(
                model.unet, x_T, unknown, uncond, codec.ddim_steps, generator=gen, known=(latent, known), **options
            )
        return model.latent_to_waveform(latent)[0]

    def _latent_gap(self, missing: Tensor, frames: int) -> Tensor:
        """``[frames]`` bool: latent frames whose token step holds a missing pair."""
        per_step = token_step(self.codec.config.token_rate)[0]
        steps = missing.reshape(-1, per_step).any(dim=1)
        return steps.repeat_interleave(frames // len(steps))

    def _emit(self, audio: Tensor) -> np.ndarray:
        out = audio.numpy()
        if self._limit is not None:
            out = out[: max(0, self._limit - self._emitted)]
        self._emitted += len(out)
        return out

    def _drop_tokens(self, position: int) -> None:
        if position > self._tokens_start:
            cut = min(position - self._tokens_start, len(self._tokens))
            self._tokens = self._tokens[cut:]
            self._missing = self._missing[cut:]
            self._tokens_start += cut


def _ramp(dtype: torch.dtype) -> Tensor:
    return torch.linspace(0, 1, OVERLAP_SAMPLES, dtype=torch.float64).to(dtype)
