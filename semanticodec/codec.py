"""SemantiCodec: audio → token pairs ``[T, 2]`` → audio, batched, on any device.

Encoding pads each input to whole 10.24 s windows, computes the AudioMAE fbank over the
padded signal, runs the windows of all inputs through the encoder in batches and trims each
token sequence to its duration. Decoding cuts tokens into 10.24 s windows with 0.64 s
overlap, samples every window with DDIM (windows of all inputs batched together, each with
its own noise generator, so the result does not depend on the batch), and cross-fades the
window waveforms.

``compat="official"`` reproduces the official implementation's behaviour exactly (parity
tests use it); the default fixes its quirks:

============================  ==========================================  ===========================
behaviour                     official                                    default
============================  ==========================================  ===========================
stereo input                  channel 0                                   average of the channels
input of k × 10.24 s          k + 1 windows (one all padding)             k windows
token count                   ``dur + 0.16 - dur % 0.16`` (float)         whole 0.16 s columns (int)
window joins                  +32 samples of drift per window             windows at exact 9.6 s hops
output length                 tokens' duration                            the input's sample count
DDIM noise                    global RNG (η = 1, no seed)                 per-window seeded generators
============================  ==========================================  ===========================
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from semanticodec.audio import SAMPLE_RATE, Downmix, prepare, read_audio
from semanticodec.conditioning import split_windows, target_token_length
from semanticodec.config import ModelConfig
from semanticodec.features import audiomae_fbank
from semanticodec.model import SemantiCodecModel

Compat = Literal["default", "official"]

WINDOW_SAMPLES = 163840
"""Samples in one 10.24 s window at 16 kHz."""

FRAMES_PER_WINDOW = 1024
"""Fbank frames per window."""

OVERLAP_SAMPLES = 10240
"""Cross-fade length between decode windows (0.64 s)."""

HOP_SAMPLES = WINDOW_SAMPLES - OVERLAP_SAMPLES
"""Start-to-start distance of decode windows (9.6 s)."""

AudioInput = str | os.PathLike | np.ndarray | Tensor


@dataclass(frozen=True)
class EncodedAudio:
    """Tokens of one input and what a bitstream needs to decode them.

    ``tokens`` is int64 ``[T, 2]``: column 0 semantic ids in [0, V), column 1 acoustic ids
    in [0, 8192). At 100 tok/s 8 consecutive rows are the 8 frequency bands of one 0.16 s
    column (4 at 50 tok/s; at 25 tok/s 4 rows span 0.32 s). ``num_samples`` and
    ``sample_rate`` describe the original input (before resampling to 16 kHz).
    """

    tokens: np.ndarray
    token_rate: int
    semantic_vocab_size: int
    acoustic_vocab_size: int
    model_id: bytes
    num_samples: int
    sample_rate: int

    def header(self, packet_columns: int | None = None):
        """The ``bitstream.Header`` of these tokens (``packet_columns``: None = the format's default)."""
        from bitstream import Header

        return Header(
            token_rate=self.token_rate,
            semantic_vocab=self.semantic_vocab_size,
            acoustic_vocab=self.acoustic_vocab_size,
            model_id=self.model_id,
            sample_count=self.num_samples,
            sample_rate=self.sample_rate,
            packet_columns=packet_columns,
        )

    @property
    def num_samples_16k(self) -> int:
        """Length of the input at 16 kHz."""
        return math.ceil(self.num_samples * SAMPLE_RATE / self.sample_rate)

    @property
    def duration(self) -> float:
        """Duration of the original audio in seconds."""
        return self.num_samples / self.sample_rate


class SemantiCodec:
    """The codec, with the weights of (``token_rate``, ``semantic_vocab_size``).

    Args:
        token_rate: 100, 50 or 25 tokens per second (semantic and acoustic together).
        semantic_vocab_size: semantic codebook size (official: 4096, 8192, 16384, 32768); None:
            16384 with official checkpoints, else the bundled default model's (4096).
        checkpoint: a ``.safetensors`` file made by ``semanticodec convert`` or an official
            checkpoint folder; None: ``$SEMANTICODEC_CHECKPOINT``, then the official weights from
            the Hugging Face cache or downloaded on first use (:mod:`semanticodec.hub`), then, when
            nothing is named, the small model bundled with the package (100 tok/s, 4096 + 4096 ids).
        model: ``"small"``: the bundled small model; ``"official"``: official weights only
            (see :func:`semanticodec.weights.load_model`).
        offline: never touch the network (None: ``$HF_HUB_OFFLINE``).
        device: where to run (default: CUDA when available, else CPU).
        ddim_steps: DDIM sampling steps (official default 50).
        cfg_scale: classifier-free guidance scale (official 2.0).
        eta: DDIM η (official 1.0: stochastic; 0: deterministic given the start noise).
        seed: seed of the decoder noise; None draws fresh noise at every call.
        compat: ``"official"`` reproduces the official quirks (see the module docstring).
        batch_size: windows per forward pass (memory grows linearly with it).
        progress: show a progress bar for inputs longer than one window.

    :meth:`from_model` wraps a model that is already built (for tests and training).
    """

    def __init__(
        self,
        token_rate: int = 100,
        semantic_vocab_size: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        ddim_steps: int = 50,
        cfg_scale: float = 2.0,
        eta: float = 1.0,
        seed: int | None = None,
        compat: Compat = "default",
        batch_size: int = 4,
        progress: bool = False,
        model: str | None = None,
        offline: bool | None = None,
    ) -> None:
        from semanticodec.weights import load_model

        self._setup(
            load_model(token_rate, semantic_vocab_size, checkpoint, model=model, offline=offline),
            device=device, ddim_steps=ddim_steps, cfg_scale=cfg_scale, eta=eta, seed=seed,
            compat=compat, batch_size=batch_size, progress=progress,
        )

    @classmethod
    def from_model(cls, model: SemantiCodecModel, **options) -> SemantiCodec:
        """The codec around an already built ``model``; ``options`` are the constructor's
        keyword arguments after ``checkpoint`` (device, ddim_steps, ...)."""
        codec = cls.__new__(cls)
        codec._setup(model, **options)
        return codec

    def _setup(
        self,
        model: SemantiCodecModel,
        device: str | torch.device | None = None,
        ddim_steps: int = 50,
        cfg_scale: float = 2.0,
        eta: float = 1.0,
        seed: int | None = None,
        compat: Compat = "default",
        batch_size: int = 4,
        progress: bool = False,
    ) -> None:
        if compat not in ("default", "official"):
            raise ValueError(f"compat must be 'default' or 'official', got {compat!r}")
        if ddim_steps < 1:
            raise ValueError(f"ddim_steps must be >= 1, got {ddim_steps}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.config: ModelConfig = model.config
        self.ddim_steps = int(ddim_steps)
        self.cfg_scale = float(cfg_scale)
        self.eta = float(eta)
        self.seed = seed
        self.compat = compat
        self.batch_size = int(batch_size)
        self.progress = progress

    @property
    def model_id(self) -> bytes:
        return self.config.model_id

    def _generators(self, item: int, windows: int) -> list[torch.Generator] | None:
        if self.seed is None:
            return None
        return [window_generator(self.seed, w, item, self.device) for w in range(windows)]

    def _load(self, audio: AudioInput, sample_rate: int | None, index: int) -> tuple[np.ndarray, int, int]:
        """16 kHz mono float32 of one input, with its original sample count and rate."""
        downmix: Downmix = "first" if self.compat == "official" else "mean"
        if isinstance(audio, (str, os.PathLike)):
            raw, sr = read_audio(audio)
            return prepare(raw, sr, downmix=downmix, name=str(audio)), raw.shape[-1], sr
        if sample_rate is None:
            raise ValueError("sample_rate is required for array or tensor audio")
        data = prepare(audio, sample_rate, downmix=downmix, name=f"audio[{index}]")
        return data, int(np.shape(audio)[-1]), int(sample_rate)

    @torch.inference_mode()
    def encode(
        self, audio: AudioInput | Sequence[AudioInput], sample_rate: int | None = None
    ) -> EncodedAudio | list[EncodedAudio]:
        """Tokens of one input or of a list of inputs (a path, or a numpy array / tensor
        ``[N]`` or ``[C, N]`` with ``sample_rate``); a list gives a list, batched together."""
        single = not isinstance(audio, (list, tuple))
        items = [audio] if single else list(audio)
        if not items:
            raise ValueError("no audio given")
        loaded = [self._load(a, sample_rate, i) for i, a in enumerate(items)]
        official = self.compat == "official"
        n_tok = self.config.tokens_per_window
        windows, spans, targets = [], [], []
        for wav, _, _ in loaded:
            fbank = self.fbank_windows(wav)
            spans.append((len(windows), len(windows) + fbank.shape[0]))
            windows.extend(fbank)
            targets.append(target_token_length(len(wav), self.config.token_rate, compat=official))
        ids = self._map_batches(
            lambda batch: self.model.encode_windows(torch.stack(batch).to(self.device)).cpu(), windows, "encode"
        )
        results = []
        for (start, stop), target, (_, num_samples, sr) in zip(spans, targets, loaded):
            tokens = torch.cat(ids[start:stop]).reshape(-1, 2)[:target]
            assert tokens.shape[0] == target <= (stop - start) * n_tok
            results.append(
                EncodedAudio(
                    tokens=tokens.numpy().astype(np.int64),
                    token_rate=self.config.token_rate,
                    semantic_vocab_size=self.config.semantic_vocab_size,
                    acoustic_vocab_size=self.config.acoustic_vocab_size,
                    model_id=self.model_id,
                    num_samples=num_samples,
                    sample_rate=sr,
                )
            )
        return results[0] if single else results

    def fbank_windows(self, wav: np.ndarray) -> Tensor:
        """Normalised fbank windows ``[W, 1024, 128]`` of 16 kHz mono audio ``[N]``, zero-padded
        to whole 10.24 s windows (official mode: one more window at exact multiples)."""
        n = len(wav)
        count = n // WINDOW_SAMPLES + 1 if self.compat == "official" else -(-n // WINDOW_SAMPLES)
        padded = torch.zeros(1, count * WINDOW_SAMPLES)
        padded[0, :n] = torch.from_numpy(wav)
        return audiomae_fbank(padded, count * FRAMES_PER_WINDOW)[0].view(count, FRAMES_PER_WINDOW, -1)

    @torch.inference_mode()
    def semantic_features(self, audio: AudioInput, sample_rate: int | None = None) -> np.ndarray:
        """Stacked AudioMAE features ``[T, D]`` float32 of one input, padded rows dropped: the
        vectors a semantic k-means codebook is trained on (T as for :meth:`encode`)."""
        wav, _, _ = self._load(audio, sample_rate, 0)
        fbank = self.fbank_windows(wav)
        target = target_token_length(len(wav), self.config.token_rate, compat=self.compat == "official")
        feats = self._map_batches(
            lambda batch: self.model.semantic_features(torch.stack(batch).to(self.device)).cpu(), list(fbank), "features"
        )
        return torch.cat(feats).reshape(-1, self.config.feature_dim)[:target].float().numpy()

    def _map_batches(self, fn: Callable[[list], Tensor], items: list, what: str) -> list[Tensor]:
        """Apply ``fn`` to ``items`` in slices of ``batch_size`` (``fn`` returns a tensor whose
        first dimension runs over the slice); returns one result per item, with a progress bar."""
        out: list[Tensor] = []
        bar = tqdm(total=len(items), desc=what, unit="window", disable=not self.progress or len(items) <= 1)
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            out.extend(fn(batch).unbind(0))
            bar.update(len(batch))
        bar.close()
        return out

    @torch.inference_mode()
    def decode(
        self, tokens: EncodedAudio | np.ndarray | Tensor | Sequence[EncodedAudio | np.ndarray | Tensor]
    ) -> np.ndarray | list[np.ndarray]:
        """Float32 16 kHz audio ``[N]`` of token pairs ``[T, 2]`` (or a list / ``[B, T, 2]`` batch).

        With :class:`EncodedAudio` input the output has the input's length at 16 kHz
        (default mode); with raw tokens, the duration the tokens cover.
        """
        single, items = _token_items(tokens)
        per_item = []
        for i, item in enumerate(items):
            tok = torch.as_tensor(item.tokens if isinstance(item, EncodedAudio) else item)
            if tok.ndim != 2 or tok.shape[-1] != 2 or tok.shape[0] == 0:
                raise ValueError(f"tokens[{i}] must have shape [T, 2] with T >= 1, got {tuple(tok.shape)}")
            if tok.is_floating_point():
                raise ValueError(f"tokens[{i}] must be integers, got {tok.dtype}")
            if isinstance(item, EncodedAudio) and item.model_id not in (self.model_id, bytes(16)):
                raise ValueError(f"tokens[{i}] were made by another model (id {item.model_id.hex()} != {self.model_id.hex()})")
            tok = tok.to(torch.int64)
            self.model.check_tokens(tok)
            windows, valid = split_windows(tok[None], window=self.config.tokens_per_window)
            per_item.append((tok.shape[0], windows[0], valid, item))

        jobs = [(i, w) for i, (_, windows, _, _) in enumerate(per_item) for w in range(windows.shape[0])]
        gens = {i: self._generators(i, per_item[i][1].shape[0]) for i in range(len(per_item))}

        def decode_batch(batch: list[tuple[int, int]]) -> Tensor:
            tok = torch.stack([per_item[i][1][w] for i, w in batch]).to(self.device)
            valid = torch.stack([per_item[i][2][w] for i, w in batch]).to(self.device)
            generators = None if self.seed is None else [gens[i][w] for i, w in batch]
            out = self.model.decode_windows(tok, valid, self.ddim_steps, self.cfg_scale, self.eta, generators=generators)
            return out.float().cpu()

        waves = self._map_batches(decode_batch, jobs, "decode")

        results, offset = [], 0
        for length, windows, _, item in per_item:
            w = waves[offset : offset + windows.shape[0]]
            offset += windows.shape[0]
            num_samples = item.num_samples_16k if isinstance(item, EncodedAudio) else None
            results.append(join_windows(w, length, self.config.token_rate, self.compat, num_samples))
        return results[0] if single else results


def window_generator(seed: int, window: int, item: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """The noise generator of decode window ``window`` of input ``item`` for ``seed``: it draws
    the window's start noise and DDIM noise, so a window's audio does not depend on its batch."""
    digest = hashlib.sha256(f"{seed}/{item}/{window}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def join_windows(
    waves: Sequence[Tensor], num_tokens: int, token_rate: int, compat: Compat = "default", num_samples: int | None = None
) -> np.ndarray:
    """Cross-fade decode-window waveforms and trim to the output length (float32 ``[N]``).

    Official: the output covers ``num_tokens`` tokens as computed by the official code.
    Default: the tokens' duration, or ``num_samples`` (the input length at 16 kHz) if shorter.
    """
    if compat == "official":
        audio = overlap_add_official(waves)
        end = int(num_tokens / 8 * 16 * 0.01 * (100 / token_rate) * SAMPLE_RATE)
    else:
        audio = overlap_add(waves)
        end = num_tokens * 2 * SAMPLE_RATE // token_rate
        if num_samples is not None:
            end = min(end, num_samples)
    return audio[:end].numpy()


def overlap_add(waves: Iterable[Tensor], hop: int = HOP_SAMPLES, overlap: int = OVERLAP_SAMPLES) -> Tensor:
    """Linear cross-fade of window waveforms placed every ``hop`` samples (no drift).

    Each window keeps its first ``hop + overlap`` samples; ``overlap`` samples are faded.
    """
    waves = [w.reshape(-1) for w in waves]
    length = hop * (len(waves) - 1) + waves[-1].shape[0]
    out = torch.zeros(length, dtype=waves[0].dtype)
    ramp = torch.linspace(0, 1, overlap, dtype=torch.float64).to(waves[0].dtype)
    for i, w in enumerate(waves):
        w = w[: hop + overlap].clone() if i + 1 < len(waves) else w.clone()
        if i > 0:
            w[:overlap] *= ramp
        if i + 1 < len(waves):
            w[hop:] *= ramp.flip(0)
        out[i * hop : i * hop + w.shape[0]] += w
    return out


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


def _token_items(tokens) -> tuple[bool, list]:
    if isinstance(tokens, EncodedAudio):
        return True, [tokens]
    if isinstance(tokens, (list, tuple)):
        if not tokens:
            raise ValueError("no tokens given")
        return False, list(tokens)
    arr = tokens if isinstance(tokens, Tensor) else np.asarray(tokens)
    if arr.ndim == 3:
        return False, list(arr)
    return True, [arr]


def semantic_feature_extractor(
    token_rate: int = 100, checkpoint: str | os.PathLike | None = None, device: str | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """``extract(waveform_16k [N] float32) -> [T, D] float32``: the semantic features of the
    model found like :class:`SemantiCodec` (for ``semanticodec kmeans features``)."""
    from semanticodec.weights import load_model

    model = load_model(token_rate, None, checkpoint)
    codec = SemantiCodec.from_model(model, device=device)
    return lambda waveform: codec.semantic_features(waveform, SAMPLE_RATE)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
