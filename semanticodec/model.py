"""The SemantiCodec network: windows of fbank → token ids, and token windows → waveforms.

This module holds the parts and the per-window computation; :mod:`semanticodec.codec` does
audio handling, windowing of long inputs, batching, overlap-add and trimming.

One window is 10.24 s: 1024 fbank frames in, N = 512 / K token pairs, 163 872 samples out
(160 per mel frame + 32). K = 1, 2, 4 at 100, 50, 25 tokens/s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from semanticodec.acoustic import UNUSED_OFFICIAL_KEYS, AcousticEncoder
from semanticodec.conditioning import decoder_context, padding_cutoff, unconditional_context, valid_tokens
from semanticodec.config import ModelConfig
from semanticodec.constants import token_samples
from semanticodec.diffusion import NoiseSchedule
from semanticodec.heap import release_free_heap
from semanticodec.nn.attention import cached_context
from semanticodec.nn.unet import UNetModel
from semanticodec.nn.vae import AutoencoderKL
from semanticodec.nn.vit import AudioMAEEncoder, mae_decoder_keys
from semanticodec.nn.vocoder import build_vocoder
from semanticodec.official import CheckpointError, check_keys, official_schema
from semanticodec.samplers import sample_latent
from semanticodec.semantic import SemanticQuantizer, stack_patches

_AUDIOMAE = "audiomae.model."
_UNET = "model.diffusion_model."
_FIRST_STAGE = "first_stage_model."
_VOCODER = "first_stage_model.vocoder."
_VAE_ENCODER_PREFIXES = ("first_stage_model.encoder.", "first_stage_model.quant_conv.")


class SemantiCodecModel(nn.Module):
    """All trainable parts of SemantiCodec plus the semantic codebook.

    Submodules (their state-dict keys are the official ones under a new prefix):
    ``audiomae`` (``audiomae.model.*``), ``acoustic`` (``encoder.*``,
    ``encoder_output_linear.*``, ``quantizer._codebook.embed``), ``unet``
    (``model.diffusion_model.*``), ``schedule`` (the top-level schedule buffers, ``logvar``,
    ``scale_factor``), ``vae`` (``first_stage_model.{decoder,post_quant_conv}`` and, when
    built ``with_vae_encoder``, ``{encoder,quant_conv}``), ``vocoder``
    (``first_stage_model.vocoder.*``). The codebook ``semantic.codebook`` ``[V, D]`` is a buffer.
    Built ``with_decoder=False`` it holds the encoding parts only (``audiomae``, ``semantic``,
    ``acoustic``): a third of the official model's memory. :meth:`stage_weights` lowers that
    further for a process that only encodes.
    """

    STAGED_PARTS = ("audiomae.", "acoustic.")
    """The encoder's two large parts, of which :meth:`stage_weights` keeps one in memory."""

    def __init__(
        self,
        config: ModelConfig,
        codebook: np.ndarray | Tensor | None = None,
        with_vae_encoder: bool = False,
        with_decoder: bool = True,
    ) -> None:
        super().__init__()
        self.config = config
        self.with_decoder = with_decoder
        if codebook is None:
            codebook = torch.zeros(config.semantic_vocab_size, config.feature_dim)
        codebook = torch.as_tensor(codebook, dtype=torch.float32)
        if tuple(codebook.shape) != (config.semantic_vocab_size, config.feature_dim):
            raise ValueError(
                f"codebook shape {tuple(codebook.shape)} != ({config.semantic_vocab_size}, {config.feature_dim}) "
                f"expected for {config.name}"
            )
        self.audiomae = AudioMAEEncoder(config.audiomae)
        self.semantic = SemanticQuantizer(codebook)
        self.acoustic = AcousticEncoder(config.acoustic)
        if with_decoder:
            self.unet = UNetModel(config.unet)
            self.schedule = NoiseSchedule(config.schedule)
            self.vae = AutoencoderKL(config.vae, with_encoder=with_vae_encoder)
            self.vocoder = build_vocoder(config.vocoder)
        self.weights_source: Callable[[str], Mapping[str, Tensor]] | None = None
        """The weights under a state-dict prefix, read again from the file they came from (set
        by the loader; None: not re-readable, e.g. memory-mapped official checkpoints)."""
        self._staged: dict[str, dict[str, tuple[tuple[int, ...], tuple[int, ...]]]] | None = None

    @property
    def tokens_per_window(self) -> int:
        return self.config.tokens_per_window

    def encode_windows(self, fbank: Tensor, valid_len: Tensor | None = None, features: Tensor | None = None) -> Tensor:
        """Token ids of fbank windows.

        Args:
            fbank: ``[W, 1024, 128]`` normalised Kaldi fbank windows.
            valid_len: ``[W]`` tokens holding audio per window; None: the official padding
                detector decides from the fbank.
            features: ``[W, N, D]`` :meth:`semantic_features` of ``fbank`` when already
                computed (staged weights encode every window's first); None: computed here.

        Returns:
            ``[W, N, 2]`` int64 (semantic, acoustic) ids.
        """
        if valid_len is None:
            valid_len = self.valid_tokens(fbank)
        if features is None:
            features = self.semantic_features(fbank)
        semantic_ids = self.semantic.quantize(features)
        release_free_heap()  # what AudioMAE and the argmin freed, before the BiLSTM's buffers
        with self._resident("acoustic."):
            acoustic = self.acoustic(features, self.semantic.lookup(semantic_ids), valid_len.to(features.device))
        return torch.stack([semantic_ids, acoustic.ids], dim=-1)

    def stage_weights(self) -> bool:
        """From now on hold the weights of only one of :attr:`STAGED_PARTS` (AudioMAE, the
        acoustic encoder) in memory at a time: the semantic stage reads AudioMAE's from
        :attr:`weights_source` when they are not in memory and frees the acoustic encoder's,
        and the acoustic stage the other way round (official 100 tokens/s model: 0.33 and
        0.83 GB in float32; the acoustic part is freed now). Reading a part again costs
        about as much as a window's encode, so :meth:`SemantiCodec.encode` then computes
        every window's semantic features first and reads each part once per call: for a
        process that encodes one whole input (the ``compress`` command). Token ids are
        unchanged. Returns False (and changes nothing) where the weights cannot be read again
        (:attr:`weights_source` None)."""
        if self.weights_source is None:
            return False
        self._staged = {}
        self._evict("acoustic.")
        return True

    @property
    def staged(self) -> bool:
        """Whether :meth:`stage_weights` is on."""
        return self._staged is not None

    @contextmanager
    def _resident(self, part: str) -> Iterator[None]:
        """Inside, the weights of ``part`` (one of :attr:`STAGED_PARTS`) are in memory; with
        :meth:`stage_weights`, the other staged part's are freed first."""
        if self._staged is not None:
            for other in self.STAGED_PARTS:
                if other != part:
                    self._evict(other)
            layouts = self._staged.pop(part, None)
            if layouts is not None:
                own = self._entries(part)
                for key, (shape, stride) in layouts.items():
                    own[key].data = torch.empty_strided(shape, stride, dtype=own[key].dtype, device=own[key].device)
                assert self.weights_source is not None
                self.load_weights(self.weights_source(part), (part,))
        yield

    def _evict(self, part: str) -> None:
        """Free every weight of ``part`` (the tensors stay, empty; :meth:`_resident` gives them
        their shapes and strides back and reads them again)."""
        assert self._staged is not None
        if part in self._staged:
            return
        layouts = {}
        for key, tensor in self._entries(part).items():
            layouts[key] = (tuple(tensor.shape), tuple(tensor.stride()))
            tensor.data = tensor.new_empty(0)
        self._staged[part] = layouts
        release_free_heap()

    def _entries(self, prefixes: str | tuple[str, ...]) -> dict[str, Tensor]:
        """The parameters and buffers (themselves, not copies) whose keys start with ``prefixes``."""
        return {k: v for k, v in self.state_dict(keep_vars=True).items() if k.startswith(prefixes)}

    def valid_tokens(self, fbank: Tensor) -> Tensor:
        """``[W]`` tokens of each fbank window ``[W, 1024, 128]`` that hold audio (padding detector)."""
        return valid_tokens(padding_cutoff(fbank), self.tokens_per_window)

    def semantic_features(self, fbank: Tensor) -> Tensor:
        """Continuous semantic features ``[W, N, D]``: AudioMAE of fbank windows ``[W, 1024, 128]``,
        CLS dropped, stacked to the token rate."""
        with self._resident("audiomae."):
            patches = self.audiomae(fbank)[:, 1:]
        return stack_patches(patches, self.config.token_rate, self.config.audiomae.freq_patches)

    def context(self, tokens: Tensor, valid_len: Tensor, semantic_only: bool = False) -> tuple[Tensor, Tensor]:
        """Conditional and unconditional decoder contexts ``[W, N, 2D + pe_dim]`` of token windows ``[W, N, 2]``.

        ``semantic_only``: the acoustic ids are ignored and the acoustic part of the context is
        zero, as the decoder saw it when the acoustic stream was dropped in training (models
        with ``config.semantic_only_decoding`` only, see :meth:`check_semantic_only`).
        """
        self.check_tokens(tokens)
        pe_dim = self.config.pe_dim
        semantic = self.semantic.lookup(tokens[..., 0])
        if semantic_only:
            self.check_semantic_only()
            acoustic = torch.zeros_like(semantic)
        else:
            acoustic = self.acoustic.lookup(tokens[..., 1])
        cond = decoder_context(acoustic, semantic, valid_len, pe_dim)
        uncond = unconditional_context(
            tokens.shape[0], tokens.shape[1], self.config.feature_dim, device=cond.device, dtype=cond.dtype, pe_dim=pe_dim
        )
        return cond, uncond

    def check_semantic_only(self) -> None:
        """Raise ValueError unless this model decodes semantic ids alone (``config.semantic_only_decoding``)."""
        if not self.config.semantic_only_decoding:
            raise ValueError(
                f"model {self.config.name} cannot decode semantic tokens alone: its decoder was not trained "
                "with the acoustic stream dropped (official models never are)"
            )

    def check_tokens(self, tokens: Tensor) -> None:
        """Raise ValueError unless ``tokens [..., 2]`` lie in their vocabularies."""
        for column, name, size in ((0, "semantic", self.config.semantic_vocab_size), (1, "acoustic", self.config.acoustic_vocab_size)):
            ids = tokens[..., column]
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
                raise ValueError(f"{name} token ids must lie in [0, {size}), got min {int(ids.min())} max {int(ids.max())}")

    def latent_shape(self, windows: int) -> tuple[int, int, int, int]:
        """Shape ``[W, 8, 256, 16]`` of the diffusion latent of ``windows`` windows."""
        frames, mels = self.config.audiomae.num_frames, self.config.vocoder.num_mels
        factor = self.config.vae.downsample_factor
        return (windows, self.config.vae.embed_dim, frames // factor, mels // factor)

    def decode_windows(
        self,
        tokens: Tensor,
        valid_len: Tensor,
        steps: int,
        guidance_scale: float,
        eta: float,
        x_T: Tensor | None = None,
        generators: Sequence[torch.Generator] | None = None,
        sampler: str = "ddim",
        valid_only: bool = False,
        semantic_only: bool = False,
        waveform_dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Waveforms of token windows.

        Args:
            tokens: ``[W, N, 2]`` int64 ids per window (rows ``>= valid_len`` are ignored).
            valid_len: ``[W]`` valid token count per window.
            steps, guidance_scale, eta: sampling steps, classifier-free guidance scale, DDIM η.
            x_T: ``[W, 8, 256, 16]`` starting noise; None: drawn from ``generators`` (one per
                window, so a window's result does not depend on its batch) or the global RNG.
            sampler: one of :data:`~semanticodec.samplers.SAMPLERS` (``eta`` and the per-step
                noise apply to ``ddim`` only).
            valid_only: compute only the samples of each window's valid tokens (the vocoder skips
                the mel frames it does not need for them); the rest of the waveform is zero.
            semantic_only: decode the semantic ids alone (see :meth:`context`).
            waveform_dtype: see :meth:`latent_to_waveform`.

        Returns:
            ``[W, 160 * 1024 + 32]`` float32 waveforms at 16 kHz.
        """
        if not self.with_decoder:
            raise ValueError("this model was built without its decoder (with_decoder=False) and cannot decode")
        cond, uncond = self.context(tokens, valid_len, semantic_only)
        shape = self.latent_shape(tokens.shape[0])
        if x_T is None:
            if generators is None:
                x_T = torch.randn(shape, device=cond.device)
            else:
                x_T = torch.cat([torch.randn((1, *shape[1:]), generator=g, device=g.device) for g in generators])
                x_T = x_T.to(cond.device)
        with cached_context(self.unet):
            latent = sample_latent(
                sampler, self.schedule, self.unet, x_T, cond, uncond, steps, guidance_scale, eta, generators
            )
        return self.latent_to_waveform(latent, valid_len if valid_only else None, waveform_dtype)

    def latent_to_waveform(self, latent: Tensor, valid_len: Tensor | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """``[W, 8, 256, 16]`` diffusion latent → VAE mel → vocoder → ``[W, samples]``.

        ``valid_len``: ``[W]`` valid tokens per window; only their samples are computed (the
        vocoder leaves out the mel frames it does not need for them) and the rest is zero.
        None: all samples. ``dtype``: run the VAE decoder and vocoder under autocast to it
        (None: as the caller runs them).
        """
        if dtype is not None:
            with torch.autocast(latent.device.type, dtype=dtype):
                return self.latent_to_waveform(latent, valid_len).float()
        mel = self.vae.decode(latent / self.schedule.scale_factor)
        if valid_len is None:
            return self.vocoder.mel_to_waveform(mel)[:, 0]
        samples = [token_samples(int(n), self.config.token_rate) for n in valid_len]
        if all(self.vocoder.config.frames_for(n) >= mel.shape[2] for n in samples):
            return self.vocoder.mel_to_waveform(mel)[:, 0]
        return torch.cat([self.vocoder.mel_to_waveform(mel[i : i + 1], n)[:, 0] for i, n in enumerate(samples)])

    def load_official(
        self, encoder: Mapping[str, Tensor] | None, decoder: Mapping[str, Tensor] | None, take: bool = False
    ) -> None:
        """Load official ``encoder.ckpt`` / ``decoder.ckpt`` state dicts (strict schema check
        first; the decoder's is ignored by a model built without decoder; ``take``: as
        :meth:`load_weights`)."""
        schema = official_schema(self.config.token_rate)
        if encoder is not None:
            check_keys(encoder, schema["encoder"], "encoder checkpoint")
            dropped = {_AUDIOMAE + k for k in mae_decoder_keys()} | set(UNUSED_OFFICIAL_KEYS)
            ours = {}
            for key, value in encoder.items():
                if key in dropped:
                    continue
                ours["audiomae." + key[len(_AUDIOMAE):] if key.startswith(_AUDIOMAE) else "acoustic." + key] = value
            self.load_weights(ours, ("audiomae.", "acoustic."), take=take)
        if decoder is not None and self.with_decoder:
            check_keys(decoder, schema["decoder"], "decoder checkpoint")
            ours = {}
            for key, value in decoder.items():
                if key.startswith("model_ema.") or (
                    key.startswith(_VAE_ENCODER_PREFIXES) and not self.vae.with_encoder
                ):
                    continue
                if key.startswith(_UNET):
                    ours["unet." + key[len(_UNET):]] = value
                elif key.startswith(_VOCODER):
                    ours["vocoder." + key[len(_VOCODER):]] = value
                elif key.startswith(_FIRST_STAGE):
                    ours["vae." + key[len(_FIRST_STAGE):]] = value
                else:
                    ours["schedule." + key] = value
            self.load_weights(ours, ("unet.", "vocoder.", "vae.", "schedule."), take=take)

    def load_weights(self, state: Mapping[str, Tensor], prefixes: tuple[str, ...] = ("",), take: bool = False) -> None:
        """Copy ``state`` (keys of this model) into the entries whose keys start with ``prefixes``;
        every such entry must be given, with its shape (scalars may come as ``[1]``).

        Entries are fetched one at a time, so a lazy mapping (``open_state_dict``) loads with
        one tensor in memory beside the model. ``take=True``: a tensor of the model's dtype,
        device and strides becomes the entry itself instead of being copied (for tensors the caller
        gives up, such as a memory-mapped checkpoint's, which then stays file-backed).
        """
        own = self._entries(prefixes)
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointError(f"checkpoint does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        with torch.no_grad():
            for key in own:
                target, value = own[key], state[key]
                if target.shape != value.shape and target.numel() == value.numel() == 1:
                    value = value.reshape(target.shape)
                if target.shape != value.shape:
                    raise CheckpointError(f"{key}: checkpoint shape {tuple(value.shape)} != model {tuple(target.shape)}")
                if take and value.dtype == target.dtype and value.device == target.device and value.stride() == target.stride():
                    target.data = value
                else:
                    target.data.copy_(value)
        release_free_heap()
