"""SemantiCodec: audio → token pairs ``[T, 2]`` → audio, batched, on any device.

Encoding pads each input to whole 10.24 s windows, computes the AudioMAE fbank over the
padded signal, runs the windows of all inputs through the encoder in batches and trims each
token sequence to its duration. Decoding cuts tokens into 10.24 s windows with 0.64 s
overlap, samples every window (official DDIM or a fast solver, :mod:`semanticodec.samplers`;
windows of all inputs batched together, each with its own noise generator, so the result
does not depend on the batch), and cross-fades the window waveforms.

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

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from semanticodec.audio import Downmix, prepare, read_audio
from semanticodec.config import ModelConfig
from semanticodec.constants import SAMPLE_RATE
from semanticodec.deprecation import warn_deprecated
from semanticodec.encoded import EncodedAudio
from semanticodec.model import SemantiCodecModel
from semanticodec.samplers import check_sampler
from semanticodec.windows import Compat, encoder_windows, join_windows, split_windows, target_token_length, window_generator

PRECISIONS: dict[str, tuple[torch.dtype | None, torch.dtype | None]] = {
    "float32": (None, None),
    "bfloat16": (torch.bfloat16, torch.bfloat16),
    "float16": (torch.float16, torch.float16),
    "mixed": (None, torch.bfloat16),
}
"""Decoder precisions: the types of (the UNet's sampling, the VAE decoder and vocoder); None runs
float32, else autocast to the type. ``mixed`` keeps the UNet in float32 and runs only the VAE
decoder and vocoder in bfloat16, the part whose deviation from float32 is measured on real audio
(``benchmarks/RESULTS.md``, "Faster VAE decoder and HiFi-GAN")."""

AudioInput = str | os.PathLike | np.ndarray | Tensor


_LOADING = ("token_rate", "semantic_vocab_size", "checkpoint")
"""The constructor's former first arguments, now those of :meth:`SemantiCodec.from_pretrained`."""


class SemantiCodec:
    """The codec around a :class:`~semanticodec.model.SemantiCodecModel`.

    :meth:`from_pretrained` loads the weights (an official checkpoint, a converted
    ``.safetensors`` file, or the small model bundled with the package) and builds the codec.

    Args:
        model: the network with its weights.
        device: where to run (default: CUDA when available, else CPU).
        sampler: ``"ddim"`` (the official sampler), ``"dpmpp-2m"`` or ``"unipc"`` (fast
            deterministic ODE solvers); None: the model's default (:func:`default_sampling`:
            DDIM for official checkpoints and in official mode).
        steps: model evaluations per window (official DDIM default 50); None: the model's default.
        guidance_scale: classifier-free guidance scale (official 2.0).
        eta: DDIM η (official 1.0: stochastic; 0: deterministic given the start noise); DDIM only.
        precision: ``"float32"`` (exact), or ``"bfloat16"`` / ``"float16"``: the decoder runs under
            autocast to that type (about twice as fast on CPUs with AVX-512 BF16 and on GPUs;
            the audio differs slightly, see ``benchmarks/RESULTS.md``), or ``"mixed"``: only the
            VAE decoder and vocoder run in bfloat16 (:data:`PRECISIONS`); encoding is float32.
            None: the model's default where bfloat16 is native (:func:`native_bfloat16`;
            ``"mixed"`` for the bundled model, :func:`~semanticodec.weights.default_precision`),
            else float32.
        seed: seed of the decoder noise; None draws fresh noise at every call.
        compat: ``"official"`` reproduces the official quirks (see the module docstring).
        batch_size: windows per forward pass (memory grows linearly with it).
        progress: show a progress bar for inputs longer than one window.

    Until the next release the former constructor, ``SemantiCodec(token_rate,
    semantic_vocab_size, checkpoint, ..., ddim_steps=, cfg_scale=)``, still loads weights (with
    a DeprecationWarning), as does ``SemantiCodec.from_model(model, ...)``.
    """

    def __init__(
        self,
        model: SemantiCodecModel | None = None,
        *args: Any,
        device: str | torch.device | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        guidance_scale: float = 2.0,
        eta: float = 1.0,
        precision: str | None = None,
        seed: int | None = None,
        compat: Compat = "default",
        batch_size: int = 4,
        progress: bool = False,
        **deprecated: Any,
    ) -> None:
        if "ddim_steps" in deprecated:
            warn_deprecated("SemantiCodec(ddim_steps=...) is deprecated, use steps=...")
            steps = deprecated.pop("ddim_steps")
        if "cfg_scale" in deprecated:
            warn_deprecated("SemantiCodec(cfg_scale=...) is deprecated, use guidance_scale=...")
            guidance_scale = deprecated.pop("cfg_scale")
        loading = {name: deprecated.pop(name) for name in _LOADING if name in deprecated}
        if deprecated:
            raise TypeError(f"SemantiCodec() got unexpected keyword arguments {sorted(deprecated)}")
        if not isinstance(model, SemantiCodecModel):
            positional = args if model is None else (model, *args)
            if len(positional) > len(_LOADING) or set(_LOADING[: len(positional)]) & set(loading):
                raise TypeError("SemantiCodec(token_rate, semantic_vocab_size, checkpoint) got too many or repeated arguments")
            loading.update(zip(_LOADING, positional))
            warn_deprecated(
                "SemantiCodec(token_rate, semantic_vocab_size, checkpoint, ...) is deprecated, use "
                "SemantiCodec.from_pretrained(checkpoint, token_rate=..., semantic_vocab_size=..., ...)"
            )
            from semanticodec.weights import load_model

            model = load_model(**loading)
        elif args or loading:
            raise TypeError("SemantiCodec(model) takes no token_rate, semantic_vocab_size or checkpoint")
        from semanticodec.weights import default_precision, default_sampling

        if compat not in ("default", "official"):
            raise ValueError(f"compat must be 'default' or 'official', got {compat!r}")
        default_sampler, default_steps = default_sampling(model.config, compat)
        sampler = default_sampler if sampler is None else sampler
        steps = default_steps if steps is None else steps
        check_sampler(sampler)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else default_device()
        if precision is None:
            precision = default_precision(model.config, compat) if native_bfloat16(self.device) else "float32"
        self.model = model.to(self.device).eval()
        self.config: ModelConfig = model.config
        self.sampler = sampler
        self.steps = steps
        self.guidance_scale = float(guidance_scale)
        self.eta = float(eta)
        self.precision = precision
        self.seed = seed
        self.compat = compat
        self.batch_size = int(batch_size)
        self.progress = progress

    def decoder_precision(self) -> contextlib.AbstractContextManager:
        """The context the decoder runs in: autocast to the UNet's type of :attr:`precision`
        (nothing for float32); the VAE decoder and vocoder take :attr:`waveform_dtype`."""
        dtype = PRECISIONS[self.precision][0]
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    @property
    def waveform_dtype(self) -> torch.dtype | None:
        """Autocast type of the VAE decoder and vocoder (None: float32), from :attr:`precision`."""
        return PRECISIONS[self.precision][1]

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | os.PathLike | None = None,
        *,
        token_rate: int = 100,
        semantic_vocab_size: int | None = None,
        model: str | None = None,
        offline: bool | None = None,
        with_decoder: bool = True,
        staged: bool = False,
        **options: Any,
    ) -> SemantiCodec:
        """The codec with pretrained weights.

        Args:
            checkpoint: a ``.safetensors`` file made by ``semanticodec convert`` (or
                ``semanticodec train assemble``) or an official checkpoint folder; None:
                ``$SEMANTICODEC_CHECKPOINT``, then the official weights of (``token_rate``,
                ``semantic_vocab_size``) from the Hugging Face cache or downloaded on first use
                (:mod:`semanticodec.hub`), then, when nothing is named, the small model bundled
                with the package (100 tok/s, 4096 + 4096 ids).
            token_rate: 100, 50 or 25 tokens per second (semantic and acoustic together).
            semantic_vocab_size: semantic codebook size (official: 4096, 8192, 16384, 32768);
                None: 16384 with official weights, else the bundled default model's.
            model: ``"small"``: the bundled small model; ``"official"``: official weights only
                (see :func:`semanticodec.weights.load_model`).
            offline: never touch the network (None: ``$HF_HUB_OFFLINE``).
            with_decoder: False loads the encoding parts only (a third of the memory;
                :meth:`decode` then raises ValueError).
            staged: with ``with_decoder=False``, hold one of the encoder's two large parts in
                memory at a time (:meth:`SemantiCodecModel.stage_weights`; each :meth:`encode`
                reads them from the file again): for a process that encodes one input.
            options: the constructor's keyword arguments (device, sampler, steps, ...).
        """
        from semanticodec.weights import load_model

        return cls(load_model(token_rate, semantic_vocab_size, checkpoint, model=model, offline=offline, with_decoder=with_decoder, staged=staged), **options)

    @classmethod
    def from_model(cls, model: SemantiCodecModel, **options: Any) -> SemantiCodec:
        """Deprecated spelling of ``SemantiCodec(model, **options)`` (removed in the next release)."""
        warn_deprecated("SemantiCodec.from_model(model, ...) is deprecated, use SemantiCodec(model, ...)")
        return cls(model, **options)

    @property
    def sample_rate(self) -> int:
        """Sample rate of the decoded audio in Hz (inputs of any rate are resampled to it)."""
        return SAMPLE_RATE

    @property
    def token_rate(self) -> int:
        """Tokens per second, semantic and acoustic ids counted (100, 50 or 25)."""
        return self.config.token_rate

    @property
    def frame_rate(self) -> float:
        """Token pairs (rows of ``EncodedAudio.tokens``) per second: ``token_rate / 2``."""
        return self.config.token_rate / 2

    @property
    def bitrate(self) -> float:
        """Nominal bitrate in bit/s (the ``.scdc`` container adds 1-3 %)."""
        return self.config.bitrate

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
            fbank = encoder_windows(wav, self.compat)
            spans.append((len(windows), len(windows) + fbank.shape[0]))
            windows.extend(fbank)
            targets.append(target_token_length(len(wav), self.config.token_rate, compat=official))
        if self.model.staged:  # every window's AudioMAE first: each staged part is read once
            features = self._map_batches(
                lambda batch: self.model.semantic_features(torch.stack(batch).to(self.device)), windows, "semantic"
            )
            ids = self._map_batches(
                lambda pairs: self.model.encode_windows(
                    torch.stack([w for w, _ in pairs]).to(self.device), features=torch.stack([f for _, f in pairs])
                ).cpu(),
                list(zip(windows, features)),
                "encode",
            )
        else:
            ids = self._map_batches(
                lambda batch: self.model.encode_windows(torch.stack(batch).to(self.device)).cpu(), windows, "encode"
            )
        results = []
        for (start, stop), target, (_, sample_count, sr) in zip(spans, targets, loaded):
            tokens = torch.cat(ids[start:stop]).reshape(-1, 2)[:target]
            assert tokens.shape[0] == target <= (stop - start) * n_tok
            results.append(
                EncodedAudio(
                    tokens=tokens.numpy().astype(np.int64),
                    token_rate=self.config.token_rate,
                    semantic_vocab_size=self.config.semantic_vocab_size,
                    acoustic_vocab_size=self.config.acoustic_vocab_size,
                    model_id=self.model_id,
                    sample_count=sample_count,
                    sample_rate=sr,
                )
            )
        return results[0] if single else results

    @torch.inference_mode()
    def semantic_features(self, audio: AudioInput, sample_rate: int | None = None) -> np.ndarray:
        """Stacked AudioMAE features ``[T, D]`` float32 of one input, padded rows dropped: the
        vectors a semantic k-means codebook is trained on (T as for :meth:`encode`)."""
        wav, _, _ = self._load(audio, sample_rate, 0)
        fbank = encoder_windows(wav, self.compat)
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
        self,
        tokens: EncodedAudio | np.ndarray | Tensor | Sequence[EncodedAudio | np.ndarray | Tensor],
        semantic_only: bool = False,
    ) -> np.ndarray | list[np.ndarray]:
        """Float32 16 kHz audio ``[N]`` of token pairs ``[T, 2]`` (or a list / ``[B, T, 2]`` batch).

        With :class:`EncodedAudio` input the output has the input's length at 16 kHz
        (default mode); with raw tokens, the duration the tokens cover.

        ``semantic_only=True`` decodes the semantic ids alone (half the bitrate: the
        ``.scdc`` semantic layer), for models trained for it (``config.semantic_only_decoding``;
        official models are refused with ValueError). Tokens may then also be ``[T]`` semantic
        ids; the acoustic column of ``[T, 2]`` pairs is ignored.
        """
        if semantic_only:
            self.model.check_semantic_only()
        single, items = _token_items(tokens)
        per_item = []
        for i, item in enumerate(items):
            tok = torch.as_tensor(item.tokens if isinstance(item, EncodedAudio) else item)
            if semantic_only and tok.ndim == 1:
                tok = torch.stack([tok, torch.zeros_like(tok)], dim=-1)
            elif semantic_only and tok.ndim == 2 and tok.shape[-1] == 2:
                tok = torch.stack([tok[:, 0], torch.zeros_like(tok[:, 0])], dim=-1)
            if tok.ndim != 2 or tok.shape[-1] != 2 or tok.shape[0] == 0:
                shapes = "[T, 2] or [T]" if semantic_only else "[T, 2]"
                raise ValueError(f"tokens[{i}] must have shape {shapes} with T >= 1, got {tuple(tok.shape)}")
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
            with self.decoder_precision():
                out = self.model.decode_windows(
                    tok, valid, self.steps, self.guidance_scale, self.eta, generators=generators, sampler=self.sampler,
                    semantic_only=semantic_only,
                    valid_only=True, waveform_dtype=self.waveform_dtype,
                )
            return out.float().cpu()

        waves = self._map_batches(decode_batch, jobs, "decode")

        results, offset = [], 0
        for length, windows, _, item in per_item:
            w = waves[offset : offset + windows.shape[0]]
            offset += windows.shape[0]
            sample_count = item.sample_count_16k if isinstance(item, EncodedAudio) else None
            results.append(join_windows(w, length, self.config.token_rate, self.compat, sample_count))
        return results[0] if single else results


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
    model found like :class:`SemantiCodec` (for ``semanticodec kmeans features``). Its weights
    are staged, so the acoustic encoder, which features do not need, is never read."""
    from semanticodec.weights import load_model

    codec = SemantiCodec(load_model(token_rate, None, checkpoint, with_decoder=False, staged=True), device=device)
    return lambda waveform: codec.semantic_features(waveform, SAMPLE_RATE)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA GPU that supports it, or a CPU
    with AVX512-BF16 or AMX. Elsewhere bfloat16 is emulated and slower than float32, so the
    default precision stays float32 there."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
