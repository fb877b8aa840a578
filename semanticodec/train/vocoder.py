"""Stage 4: the vocoder (HiFi-GAN or Vocos, as the model config says), trained as in HiFi-GAN
(Kong et al. 2020) on 16 kHz crops.

Per step, on crops ``[B, S]``:

1. input ``mel64(crop, framing="audioldm_train")`` ``[B, 64, F]`` with ``F = S // 160`` (the
   decoder domain, what the VAE hands to the vocoder); target: the first ``160 F`` samples;
2. the generator outputs ``[B, 1, 160 F + 32]`` (HiFi-GAN, weight norm applied) or
   ``[B, 1, 160 F]`` (Vocos), cut to ``160 F``;
3. discriminator step (the configured MPD / MSD / MRD set, least squares) on target vs
   detached output, then generator step on
   ``45 |mel(out) - mel(target)|₁ + λ_stft L_stft + L_adv + 2 L_fm``, where ``L_stft`` is the
   multi-resolution STFT loss (spectral convergence + log-magnitude L1, averaged over
   ``stft_resolutions``; Parallel WaveGAN, Yamamoto et al. 2020; off in the HiFi-GAN presets).

Padding of short clips (``Batch.length``): the output is multiplied by the sample mask, so
real and generated waveforms are both zero after ``length`` and the discriminators cannot
tell them apart there; the mel L1 is averaged over the frames that start inside the clip
only. For the first ``mel_only_steps`` steps only the mel loss trains the generator (no
discriminator runs), which gives a usable vocoder quickly on a small budget; the
adversarial losses then add the fine structure. The learning rate decays by ``lr_decay``
every ``lr_decay_every`` steps (HiFi-GAN: 0.999 per epoch), a pure function of the step so
that resumed runs follow the same schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from semanticodec.config import ModelConfig
from semanticodec.features import MEL_BINS, MEL_HOP, mel64
from semanticodec.nn.discriminators import (
    DiscriminatorConfig,
    VocoderDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from semanticodec.nn.hifigan import HiFiGAN
from semanticodec.nn.vocoder import Vocoder, VocoderConfig, build_vocoder
from semanticodec.train.data import Batch
from semanticodec.train.loop import Distributed, TrainConfig, clip_and_step

PREFIX = "vocoder."
"""Key prefix of the exported weights (:class:`~semanticodec.model.SemantiCodecModel`)."""

MIN_CROP_SAMPLES = 1024
"""Shortest crop the stage accepts (the mel framing needs > 432 samples; the MSD's strides
and the MPD's period 11 need a few thousand to see more than a handful of frames)."""


@dataclass(frozen=True)
class VocoderTrainConfig(TrainConfig):
    """Vocoder training.

    ``lambda_mel`` / ``lambda_fm``: weights of the mel L1 and feature-matching losses
    (HiFi-GAN: 45 and 2; the adversarial loss has weight 1); ``lambda_stft``: weight of the
    multi-resolution STFT loss at ``stft_resolutions`` (``(n_fft, hop)`` pairs); ``betas``, ``weight_decay``:
    AdamW for both generator and discriminators; ``lr_decay`` every ``lr_decay_every`` steps;
    ``mel_only_steps``: steps trained with the mel loss alone before the discriminators start;
    ``adversarial_batch_size`` / ``adversarial_crop_seconds``: the adversarial steps train on
    the first that many crops, cut to that length (0: the whole batch), since the
    discriminators cost far more per sample than the spectral losses;
    ``discriminator``: MPD/MSD sizes. ``grad_clip`` defaults to 0 (HiFi-GAN does not clip).
    """

    lambda_mel: float = 45.0
    lambda_fm: float = 2.0
    lambda_stft: float = 0.0
    stft_resolutions: tuple[tuple[int, int], ...] = ((256, 64), (512, 128), (1024, 256))
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    lr_decay: float = 0.999
    lr_decay_every: int = 1000
    mel_only_steps: int = 0
    adversarial_batch_size: int = 0
    adversarial_crop_seconds: float = 0.0
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    grad_clip: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crop_samples < MIN_CROP_SAMPLES:
            raise ValueError(f"crop_seconds {self.crop_seconds} gives {self.crop_samples} samples, need >= {MIN_CROP_SAMPLES}")
        if self.lambda_mel < 0 or self.lambda_fm < 0 or self.lambda_stft < 0 or self.weight_decay < 0:
            raise ValueError(f"lambda_mel, lambda_fm, lambda_stft and weight_decay must be >= 0: {self}")
        if self.lambda_stft > 0 and (
            not self.stft_resolutions or any(len(r) != 2 or not 0 < r[1] <= r[0] for r in self.stft_resolutions)
        ):
            raise ValueError(f"stft_resolutions must be (n_fft, hop) pairs with 0 < hop <= n_fft: {self.stft_resolutions}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 < self.lr_decay <= 1 or self.lr_decay_every < 1:
            raise ValueError(f"lr_decay must lie in (0, 1] and lr_decay_every be >= 1: {self}")
        if self.mel_only_steps < 0:
            raise ValueError(f"mel_only_steps must be >= 0, got {self.mel_only_steps}")
        if not 0 <= self.adversarial_batch_size <= self.batch_size:
            raise ValueError(f"adversarial_batch_size must lie in [0, batch_size], got {self.adversarial_batch_size}")
        adversarial_samples = round(self.adversarial_crop_seconds * 16000)
        if self.adversarial_crop_seconds and not MIN_CROP_SAMPLES <= adversarial_samples <= self.crop_samples:
            raise ValueError(
                f"adversarial_crop_seconds {self.adversarial_crop_seconds} must give {MIN_CROP_SAMPLES} to "
                f"{self.crop_samples} samples (0: the whole crop)"
            )


PRESETS: dict[str, VocoderTrainConfig] = {
    "official": VocoderTrainConfig(
        steps=2_500_000, batch_size=16, crop_seconds=0.512, learning_rate=2e-4, log_every=100, checkpoint_every=5000,
        lr_decay_every=1000,
    ),
    "small": VocoderTrainConfig(
        steps=40_000, batch_size=16, crop_seconds=0.64, learning_rate=5e-4, betas=(0.8, 0.9), log_every=20,
        checkpoint_every=200, lr_decay=0.999, lr_decay_every=100, mel_only_steps=6000, lambda_stft=15.0,
        grad_clip=10.0, adversarial_batch_size=8, adversarial_crop_seconds=0.32,
        discriminator=DiscriminatorConfig(scales=0, width=0.25, resolutions=((512, 128), (1024, 256), (256, 64))),
    ),
    "tiny": VocoderTrainConfig(
        steps=3, batch_size=2, crop_seconds=0.128, learning_rate=2e-4, log_every=1, checkpoint_every=2,
        mel_only_steps=1, lambda_stft=1.0, stft_resolutions=((128, 32), (256, 64)),
        discriminator=DiscriminatorConfig(periods=(2, 3), scales=2, width=0.0625, resolutions=((128, 32),)),
    ),
}
"""``official``: HiFi-GAN V1's recipe (batch 16, 8192-sample segments = 0.512 s at 16 kHz,
2.5 M steps) for GPUs. ``small``: for the Vocos of :meth:`ModelConfig.small` on one CPU core:
16 crops of 0.64 s; 6000 steps with the mel and multi-resolution STFT losses only, then the
GAN with the MPD (1/4 width) and a complex-STFT MRD (Vocos' pairing, no MSD) on 8 crops of
0.32 s; resumable
across sessions (:attr:`steps` is a ceiling, the bundled model used the step recorded in its
model card). ``tiny``: tests (every loss and discriminator kind)."""


class VocoderStage:
    """Vocoder generator (the model config's HiFi-GAN or Vocos) + discriminators; exports ``vocoder.*``."""

    name = "vocoder"

    def __init__(
        self,
        model_config: ModelConfig,
        config: VocoderTrainConfig,
        distributed: Distributed = Distributed(),
        init: Mapping[str, Tensor] | None = None,
    ) -> None:
        vocoder = model_config.vocoder
        if vocoder.num_mels != MEL_BINS or vocoder.hop_length != MEL_HOP:
            raise ValueError(
                f"the vocoder must map {MEL_BINS} mel bins at hop {MEL_HOP} (mel64), got "
                f"{vocoder.num_mels} bins at hop {vocoder.hop_length}"
            )
        self.config = config
        self.distributed = distributed
        self.generator: Vocoder = build_vocoder(vocoder)
        if init is None:
            _initialise(self.generator)
        else:
            self.generator.load_state_dict(_strip_prefix(init, self.generator))
        if isinstance(self.generator, HiFiGAN):
            self.generator.apply_weight_norm()
        self.generator.to(distributed.device)
        self.discriminator = VocoderDiscriminator(config.discriminator).to(distributed.device)
        self._generator = distributed.wrap(self.generator)
        self._discriminator = distributed.wrap(self.discriminator)
        adamw = dict(lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay)
        self.optimizer_g = torch.optim.AdamW(self.generator.parameters(), **adamw)
        self.optimizer_d = torch.optim.AdamW(self.discriminator.parameters(), **adamw)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.optimizer_g, "discriminator": self.optimizer_d}

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        """One discriminator step (once adversarial) and one generator step on ``batch``.

        Logs ``mel`` (unweighted L1 on log-mel), ``stft`` (unweighted; 0 when ``lambda_stft``
        is 0), ``gen_adv``, ``fm`` (unweighted) and ``disc``; the last three are 0 during the
        mel-only steps (the log's columns stay fixed).
        """
        config = self.config
        if step >= config.mel_only_steps:
            rows = config.adversarial_batch_size or batch.audio.shape[0]
            samples = round(config.adversarial_crop_seconds * 16000) or batch.audio.shape[1]
            batch = Batch(batch.audio[:rows, :samples], batch.length[:rows].clamp(max=samples))
        lr = config.learning_rate * config.lr_decay ** (step // config.lr_decay_every)
        for optimizer in (self.optimizer_g, self.optimizer_d):
            for group in optimizer.param_groups:
                group["lr"] = lr
        mel = mel64(batch.audio, framing="audioldm_train")
        frames = mel.shape[2]
        samples = frames * MEL_HOP
        real = batch.audio[:, None, :samples]
        sample_mask = torch.arange(samples, device=real.device) < batch.length[:, None, None]
        frame_mask = torch.arange(frames, device=real.device) * MEL_HOP < batch.length[:, None]
        fake = self._generator(mel)[:, :, :samples] * sample_mask
        mel_loss = _masked_l1(mel64(fake[:, 0], framing="audioldm_train"), mel, frame_mask)
        spectral_loss = config.lambda_mel * mel_loss
        stft_loss = torch.zeros((), device=real.device)
        if config.lambda_stft > 0:
            stft_loss = multi_resolution_stft_loss(fake[:, 0], real[:, 0], config.stft_resolutions)
            spectral_loss = spectral_loss + config.lambda_stft * stft_loss
        if step < config.mel_only_steps:
            clip_and_step(spectral_loss, self.generator, self.optimizer_g, config.grad_clip)
            return {"mel": mel_loss.item(), "stft": stft_loss.item(), "gen_adv": 0.0, "fm": 0.0, "disc": 0.0}

        judged = self._discriminator(torch.cat([real, fake.detach()]))
        real_logits, fake_logits = _halves([logits for logits, _ in judged])
        disc_loss = discriminator_loss(real_logits, fake_logits)
        clip_and_step(disc_loss, self.discriminator, self.optimizer_d, config.grad_clip)

        self.discriminator.requires_grad_(False)
        try:
            judged = self.discriminator(torch.cat([real, fake]))
        finally:
            self.discriminator.requires_grad_(True)
        _, fake_logits = _halves([logits for logits, _ in judged])
        split = [_halves(features) for _, features in judged]
        adv_loss = generator_adversarial_loss(fake_logits)
        fm_loss = feature_matching_loss([r for r, _ in split], [f for _, f in split])
        gen_loss = spectral_loss + adv_loss + config.lambda_fm * fm_loss
        clip_and_step(gen_loss, self.generator, self.optimizer_g, config.grad_clip)
        return {
            "mel": mel_loss.item(), "stft": stft_loss.item(), "gen_adv": adv_loss.item(), "fm": fm_loss.item(),
            "disc": disc_loss.item(),
        }

    def export(self) -> dict[str, Tensor]:
        """Inference weights (HiFi-GAN: weight norm folded in) as ``vocoder.*`` keys of
        :class:`~semanticodec.model.SemantiCodecModel`; training is not disturbed."""
        state = {k: v.detach().cpu() for k, v in self.generator.state_dict().items()}
        return inference_weights(self.generator.config, state)


def inference_weights(config: VocoderConfig, generator: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A training generator's state (HiFi-GAN with weight norm, or Vocos) as inference weights:
    ``vocoder.*`` keys of :class:`~semanticodec.model.SemantiCodecModel`, weight norm folded in."""
    vocoder = build_vocoder(config)
    if any("parametrizations" in key for key in generator):
        vocoder.apply_weight_norm()
        vocoder.load_state_dict(generator)
        vocoder.remove_weight_norm()
    else:
        vocoder.load_state_dict(generator)
    return {PREFIX + k: v.detach().clone() for k, v in vocoder.state_dict().items()}


def checkpoint_weights(state: dict, config: VocoderConfig) -> dict[str, Tensor] | None:
    """What :meth:`VocoderStage.export` would write, from a loaded ``checkpoint.pt`` of a
    vocoder run with sizes ``config`` (so that a run can be assembled and measured while it
    trains on); None when ``state`` is not a vocoder run's checkpoint."""
    modules = state.get("modules") if isinstance(state, dict) else None
    if not isinstance(modules, dict) or not {"generator", "discriminator"} <= modules.keys():
        return None
    return inference_weights(config, modules["generator"])


def multi_resolution_stft_loss(fake: Tensor, real: Tensor, resolutions: tuple[tuple[int, int], ...]) -> Tensor:
    """Mean over ``(n_fft, hop)`` resolutions of spectral convergence ``‖|S_r| - |S_f|‖_F / ‖|S_r|‖_F``
    plus ``mean |log |S_r| - log |S_f||`` (magnitudes clamped at 1e-5), on waveforms ``[B, S]``."""
    total = torch.zeros((), device=fake.device)
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=fake.device, dtype=fake.dtype)
        mags = [
            torch.stft(x, n_fft, hop, window=window, return_complex=True).abs().clamp(min=1e-5) for x in (fake, real)
        ]
        convergence = torch.linalg.vector_norm(mags[1] - mags[0]) / torch.linalg.vector_norm(mags[1])
        total = total + convergence + (mags[1].log() - mags[0].log()).abs().mean()
    return total / len(resolutions)


def _halves(tensors: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Split each ``[2B, ...]`` tensor of a real-then-fake batch into its real and fake halves."""
    pairs = [t.chunk(2) for t in tensors]
    return [real for real, _ in pairs], [fake for _, fake in pairs]


def _masked_l1(prediction: Tensor, target: Tensor, frame_mask: Tensor) -> Tensor:
    """Mean ``|prediction - target|`` over ``[B, bins, frames]`` where ``frame_mask`` ``[B, frames]``."""
    mask = frame_mask[:, None, :].to(prediction.dtype)
    return ((prediction - target).abs() * mask).sum() / (mask.sum() * prediction.shape[1]).clamp(min=1)


def _initialise(generator: Vocoder) -> None:
    """HiFi-GAN's ``init_weights`` (upsampling and resblock convolutions ~ N(0, 0.01)) or
    Vocos' (convolution and linear weights ~ truncated N(0, 0.02), biases 0)."""
    with torch.no_grad():
        if isinstance(generator, HiFiGAN):
            for module in (generator.ups, generator.resblocks):
                for conv in module.modules():
                    if isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d)):
                        conv.weight.normal_(0.0, 0.01)
            return
        for layer in generator.modules():
            if isinstance(layer, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)


def _strip_prefix(init: Mapping[str, Tensor], generator: Vocoder) -> dict[str, Tensor]:
    expected = {PREFIX + k for k in generator.state_dict()}
    given = {k for k in init if k.startswith(PREFIX)}
    if given != expected:
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        raise ValueError(f"init weights do not fit the vocoder: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return {k[len(PREFIX):]: init[k] for k in given}
