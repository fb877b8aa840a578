"""Streaming encode and decode: audio chunks → ``.scdc`` packets → audio chunks, in bounded memory.

Encoder modes (:class:`StreamingEncoder`):

- ``"exact"``: every 10.24 s encoder window is encoded as soon as its samples and the 240
  samples after it (the last two fbank frames of a window reach into the next one) have
  arrived, so the tokens are those of offline encoding. The offline fbank subtracts the mean of
  the whole padded signal; the Kaldi fbank removes each frame's DC anyway, so that mean changes
  the features only by float rounding. The streaming encoder subtracts no mean (it cannot know
  the global one). Algorithmic latency: one window plus 15 ms (10.255 s); with
  ``batch_windows`` B, B windows are encoded together (faster per window on CPU) and the
  latency is B windows plus 15 ms.
- ``"low_latency"``: every ``latency`` seconds (a whole number of token steps, 0.16 s; 0.32 s
  at 25 tok/s) one encoder window is run over up to ``context`` seconds of past audio, the new
  block and ``lookahead`` seconds of future audio, followed by zero padding (which the encoder
  detects and marks as padding, as at the end of a file); the tokens of the new block are
  emitted. Algorithmic latency ``latency + lookahead``; tokens differ from offline encoding
  (the window sees less context, and the bidirectional LSTM less future).

:class:`StreamingDecoder` takes the bytes of a stream as they arrive and returns audio as soon
as it is final: decode window w (512 / K tokens, starting every 480 / K tokens) is sampled
when its tokens are in, with the same per-window seeded noise as :meth:`SemantiCodec.decode`,
and cross-faded by :class:`semanticodec.windows.OverlapAdd`; the result equals offline decoding
of the same stream. Lost or corrupt packets (found by the resilient bitstream reader) are
concealed (:mod:`semanticodec.concealment`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from semanticodec.audio import StreamResampler, check_audio, check_sample_rate, to_mono
from semanticodec.bitstream import Damage, EntropyTables, Header, StreamReader, StreamWriter, TableSource
from semanticodec.codec import SemantiCodec
from semanticodec.concealment import CONCEALED_TAIL_PACKETS, Concealment, check_concealment_budget, decode_window
from semanticodec.constants import (
    COLUMN_SAMPLES,
    CONCEALMENTS,
    PAIRS_PER_COLUMN,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    token_samples,
)
from semanticodec.entropy_tables import find_tables, tables_for_model
from semanticodec.features import FBANK_FRAME_SHIFT
from semanticodec.windows import LOOKAHEAD_SAMPLES, OverlapAdd, target_token_length, window_fbank, window_generator, window_hop

EncoderMode = Literal["exact", "low_latency"]


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
        tables: entropy tables the packets are range coded with where that makes them smaller;
            ``"model"``: the codec's model's installed tables (fixed width when it has none);
            None: fixed width (format version 1).
        batch_windows: exact mode: windows encoded together (the BiLSTM then reads its
            weights once per step for all of them, ~2x faster per window at 4 on CPU), so
            tokens come out that many windows at a time; 1 in low-latency mode.
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
        tables: EntropyTables | Literal["model"] | None = "model",
        batch_windows: int = 1,
    ) -> None:
        if mode not in ("exact", "low_latency"):
            raise ValueError(f"mode must be 'exact' or 'low_latency', got {mode!r}")
        if batch_windows < 1 or (mode == "low_latency" and batch_windows != 1):
            raise ValueError(f"batch_windows must be >= 1 in exact mode and 1 in low-latency mode, got {batch_windows}")
        if codec.compat != "default":
            raise ValueError("streaming needs a codec with compat='default' (the official windowing is not streamable)")
        if sample_count < 0:
            raise ValueError(f"sample_count must be >= 0, got {sample_count}")
        check_sample_rate(sample_rate)
        self.codec = codec
        self.mode = mode
        self.sample_rate = int(sample_rate)
        config = codec.config
        self._step_samples = COLUMN_SAMPLES[config.token_rate]
        self._tokens_per_step = PAIRS_PER_COLUMN[config.token_rate]
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
        self._batch_windows = batch_windows
        self._pending: list[tuple[int, bool, Tensor]] = []  # exact mode: (start, last, fbank) not yet encoded
        self._audio_start = 0
        self._next = 0
        self._received = 0
        self._sink = _ByteSink()
        header = Header(
            token_rate=config.token_rate,
            semantic_vocab_size=config.semantic_vocab_size,
            acoustic_vocab_size=config.acoustic_vocab_size,
            model_id=codec.model_id,
            sample_count=int(sample_count),
            sample_rate=self.sample_rate,
            packet_columns=packet_columns,
            metadata=metadata or {},
        )
        if tables == "model":
            tables = tables_for_model(codec.model_id, header.token_rate, header.semantic_vocab_size, header.acoustic_vocab_size)
        self._writer = StreamWriter(self._sink, header, tables)
        self._sample_count = int(sample_count)
        self.finished = False

    @property
    def header(self) -> Header:
        """The stream's header; with entropy tables it names them (version 2) only once the
        first packets are out and one of them is coded (see ``bitstream.StreamWriter``)."""
        return self._writer.header

    @property
    def samples_received(self) -> int:
        """Samples pushed so far, at ``sample_rate``."""
        return self._received

    @property
    def buffered_samples(self) -> int:
        """16 kHz samples held (at most one window plus one pushed chunk, whatever the input
        length; in exact mode up to ``batch_windows - 1`` windows also wait as fbank)."""
        return len(self._audio)

    @property
    def latency_seconds(self) -> float:
        """Algorithmic latency: audio that must arrive after a sample before its token is emitted."""
        if self.mode == "exact":
            return (self._batch_windows * WINDOW_SAMPLES + LOOKAHEAD_SAMPLES) / SAMPLE_RATE
        return (self._block + self._lookahead) / SAMPLE_RATE

    @torch.inference_mode()
    def push(self, chunk: np.ndarray | Tensor) -> bytes:
        """Add audio ``[n]`` or ``[C, n]`` (float in [-1, 1] or integer PCM) at ``sample_rate``;
        returns the stream bytes now final (the header with the first call; with entropy
        tables, with the first packets)."""
        if self.finished:
            raise ValueError("push after finish")
        mono = to_mono(check_audio(chunk, "audio chunk", allow_empty=True))
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
            self._pending.append((start, last, window_fbank(self._slice(start, stop), last)))
            self._next = start + WINDOW_SAMPLES
            self._drop_before(self._next)
            if len(self._pending) == self._batch_windows:
                self._encode_pending(total)
        if final:
            self._encode_pending(total)

    def _encode_pending(self, total: int) -> None:
        """Encode the waiting exact-mode windows together and write their tokens (the last
        window's cut to the input's ``total`` 16 kHz samples)."""
        if not self._pending:
            return
        fbank = torch.stack([f for _, _, f in self._pending]).to(self.codec.device)
        for (start, last, _), ids in zip(self._pending, self.codec.model.encode_windows(fbank).cpu().numpy()):
            keep = len(ids)
            if last:
                keep = target_token_length(total, self.codec.config.token_rate) - start // WINDOW_SAMPLES * len(ids)
            self._writer.write(ids[:keep].astype(np.int64))
        self._pending.clear()

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
        on_damage: called with each :class:`semanticodec.bitstream.Damage` as it is found.
        concealment: ``"inpaint"`` (diffusion inpainting of the gap) or ``"padding"``.
        tables: where the entropy tables of a range-coded stream come from (default: the
            installed tables, :func:`semanticodec.entropy_tables.find_tables`).
        semantic_only: read and decode the semantic layer alone (as
            ``SemantiCodec.decode(..., semantic_only=True)``; models trained for it only).
    """

    def __init__(
        self,
        codec: SemantiCodec,
        on_damage: Callable[[Damage], None] | None = None,
        concealment: Concealment = "inpaint",
        tables: TableSource = find_tables,
        semantic_only: bool = False,
    ) -> None:
        if concealment not in CONCEALMENTS:
            raise ValueError(f"concealment must be one of {CONCEALMENTS}, got {concealment!r}")
        if semantic_only:
            codec.model.check_semantic_only()
        self.semantic_only = semantic_only
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
        self._tables = tables
        self._input = _PushedBytes()
        self._reader: StreamReader | None = None
        n = codec.config.tokens_per_window
        self._window_tokens = n
        self._hop_tokens = window_hop(n)
        self._tokens = np.zeros((0, 2), np.int64)
        self._missing = np.zeros(0, bool)
        self._tokens_start = 0
        self._received_end = 0
        self._window = 0
        self._joiner = OverlapAdd()
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
        if total is None:  # final packet missing: conceal at most CONCEALED_TAIL_PACKETS packets' worth
            total = self._received_end
            if self.header.sample_count and total > self.lost_pairs:
                claimed = target_token_length(self._limit, self.header.token_rate)
                total = max(total, min(claimed, total + CONCEALED_TAIL_PACKETS * self.header.packet_pairs))
            self.lost_pairs += total - self._received_end
            check_concealment_budget(self.lost_pairs, total, self.header.pairs_per_second)
        if total == 0:
            raise ValueError("the stream holds no tokens")
        token_end = token_samples(total, self.header.token_rate)
        self._limit = token_end if self._limit is None else min(self._limit, token_end)
        self._grow(total)
        out.append(self._decode_ready(total))
        self.finished = True
        return np.concatenate(out)

    def _run(self) -> np.ndarray:
        saved = bytes(self._input.data) if self._reader is None else b""
        try:
            if self._reader is None:
                layers = "semantic" if self.semantic_only else "both"
                self._reader = StreamReader(
                    self._input, layers=layers, resilient=True, on_damage=self._damaged, tables=self._tables
                )
                self._start(self._reader.header)
            for packet in self._reader:
                if self.semantic_only:
                    self._add(packet.start, np.stack([packet.semantic, np.zeros_like(packet.semantic)], axis=-1))
                else:
                    self._add(packet.start, packet.tokens)
        except _NeedMore:
            if self._reader is None:
                self._input.data[:0] = saved
        return self._decode_ready(None)

    def _start(self, header: Header) -> None:
        config = self.codec.config
        if header.token_rate != config.token_rate or header.semantic_vocab_size != config.semantic_vocab_size:
            raise ValueError(
                f"stream is {header.token_rate} tok/s with semantic vocabulary {header.semantic_vocab_size}; "
                f"the model is {config.token_rate} tok/s, {config.semantic_vocab_size}"
            )
        if header.acoustic_vocab_size != config.acoustic_vocab_size:
            raise ValueError(f"acoustic vocabulary {header.acoustic_vocab_size} != the model's {config.acoustic_vocab_size}")
        if header.model_id not in (self.codec.model_id, bytes(16)):
            raise ValueError(f"stream was made by another model (id {header.model_id.hex()} != {self.codec.model_id.hex()})")
        self.header = header
        if header.sample_count:
            self._limit = math.ceil(header.sample_count * SAMPLE_RATE / header.sample_rate)

    def _damaged(self, damage: Damage) -> None:
        self.damage.append(damage)
        if self._on_damage is not None:
            self._on_damage(damage)

    def _grow(self, end: int) -> None:
        """Extend the token buffer to pair ``end``; new rows are missing until a packet fills them."""
        have = self._tokens_start + len(self._tokens)
        if end > have:
            self._tokens = np.concatenate([self._tokens, np.zeros((end - have, 2), np.int64)])
            self._missing = np.concatenate([self._missing, np.ones(end - have, bool)])

    def _add(self, start: int, tokens: np.ndarray) -> None:
        if start > self._received_end:
            self.lost_pairs += start - self._received_end
            check_concealment_budget(self.lost_pairs, start, self.header.pairs_per_second)
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
        if total is not None:
            out.append(self._emit(self._joiner.finish()))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _decode_window(self, start: int, end: int) -> np.ndarray:
        """Sample one window, cross-fade it into the output and return the samples now final (up
        to the next window's start)."""
        n = self._window_tokens
        lo = start - self._tokens_start
        tok = np.zeros((n, 2), np.int64)
        tok[: end - start] = self._tokens[lo : lo + end - start]
        missing = np.zeros(n, bool)
        missing[: end - start] = self._missing[lo : lo + end - start]
        wave = self._sample(torch.from_numpy(tok), end - start, torch.from_numpy(missing)).float().cpu()
        return self._emit(self._joiner.push(wave))

    def _sample(self, tokens: Tensor, valid: int, missing: Tensor) -> Tensor:
        """Waveform ``[163872]`` of one window; missing rows are concealed as ``self.concealment`` says."""
        generator = window_generator(self.codec.seed, self._window, device=self.codec.device)
        return decode_window(self.codec, tokens, valid, missing, generator, self.concealment, self.semantic_only)

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
