"""Stage 3: the mel VAE (AudioLDM's ``AutoencoderKL``) with an optional patch discriminator.

Input is the decoder-domain log-mel ``mel64(audio, framing="audioldm_train")`` as
``[B, 1, frames, 64]`` (frames cut to a multiple of the VAE downsample factor). The
generator loss is the L1 reconstruction plus ``kl_weight`` x the KL divergence of the
diagonal-Gaussian posterior to N(0, I), normalised as in latent diffusion's
``LPIPSWithDiscriminator`` without LPIPS (KL summed over the latent, L1 summed over the mel,
both averaged over the batch) and then divided by the mel size so the logged ``rec`` is a
per-bin L1. From step ``disc_start`` on, a PatchGAN discriminator on the mel is trained with
the hinge loss and the generator gets ``disc_weight`` x its adversarial loss (-D(fake)).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semanticodec.config import ModelConfig
from semanticodec.features import mel64
from semanticodec.nn.vae import AutoencoderKL
from semanticodec.train.data import Batch
from semanticodec.train.loop import Distributed, TrainConfig, clip_and_step
from semanticodec.train.mae import load_prefixed


@dataclass(frozen=True)
class VAETrainConfig(TrainConfig):
    """VAE hyper-parameters on top of :class:`TrainConfig`.

    ``kl_weight`` scales the KL term; ``disc_weight`` > 0 adds a discriminator of
    ``disc_channels`` base width and ``disc_layers`` stride-2 layers, trained (and used by the
    generator loss) from step ``disc_start`` on; 0 builds none. AdamW uses ``betas`` and
    ``weight_decay`` for the VAE and the discriminator alike.
    """

    kl_weight: float = 1e-6
    disc_weight: float = 0.5
    disc_start: int = 50_001
    disc_channels: int = 64
    disc_layers: int = 3
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kl_weight < 0 or self.disc_weight < 0 or self.weight_decay < 0:
            raise ValueError(
                f"kl_weight, disc_weight and weight_decay must be >= 0, got {self.kl_weight}, "
                f"{self.disc_weight}, {self.weight_decay}"
            )
        if self.disc_start < 0 or self.disc_channels < 1 or self.disc_layers < 1:
            raise ValueError(
                f"disc_start must be >= 0 and disc_channels, disc_layers >= 1, got {self.disc_start}, "
                f"{self.disc_channels}, {self.disc_layers}"
            )


PRESETS: dict[str, VAETrainConfig] = {
    # AudioLDM: base lr 4.5e-6 x batch 8 per GPU (latent diffusion scales it linearly with
    # the GPU count: multiply learning_rate by world_size); discriminator from step 50001.
    "official": VAETrainConfig(
        steps=400_000, batch_size=8, crop_seconds=10.24, learning_rate=3.6e-5,
        log_every=100, checkpoint_every=5000, disc_start=50_001,
    ),
    # ModelConfig.small() VAE on 2 CPU cores: about 12 minutes; no discriminator (it does not
    # pay within this budget).
    "small": VAETrainConfig(
        steps=450, batch_size=4, crop_seconds=1.28, learning_rate=3e-4,
        log_every=10, checkpoint_every=100, disc_weight=0.0,
    ),
    # Tests: three steps, the discriminator from the second step on.
    "tiny": VAETrainConfig(
        steps=3, batch_size=2, crop_seconds=0.64, learning_rate=1e-3,
        log_every=1, checkpoint_every=1, disc_start=1, disc_channels=8, disc_layers=2,
    ),
}


class PatchDiscriminator(nn.Module):
    """PatchGAN on a log-mel: ``[B, 1, T, F]`` -> logits ``[B, 1, T', F']`` (one per patch).

    ``layers`` stride-2 4x4 convolutions (width doubling, capped at 8x), one stride-1 4x4
    convolution, a 4x4 output convolution; GroupNorm (1 group) and LeakyReLU(0.2) between.
    """

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        body: list[nn.Module] = [nn.Conv2d(1, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for index in range(1, layers + 1):
            out = channels * min(2**index, 8)
            stride = 2 if index < layers else 1
            body += [nn.Conv2d(width, out, 4, stride=stride, padding=1), nn.GroupNorm(1, out), nn.LeakyReLU(0.2)]
            width = out
        body.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.body = nn.Sequential(*body)

    def forward(self, mel: Tensor) -> Tensor:
        return self.body(mel)


class _Reconstruct(nn.Module):
    """``forward(mel)`` -> ``(reconstruction, mean, logvar)`` with a sampled latent (for DDP)."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, mel: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mean, logvar = self.vae.encode(mel)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        return self.vae.decode(z), mean, logvar


def vae_input(audio: Tensor, downsample_factor: int) -> Tensor:
    """The VAE's input of 16 kHz audio ``[B, N]``: log-mel ``[B, 1, frames, 64]`` with frames
    = N // 160 rounded down to a multiple of ``downsample_factor``."""
    mel = mel64(audio, framing="audioldm_train").transpose(1, 2).unsqueeze(1)
    frames = mel.shape[2] - mel.shape[2] % downsample_factor
    if frames == 0:
        raise ValueError(f"crops of {audio.shape[1]} samples give fewer than {downsample_factor} mel frames")
    return mel[:, :, :frames]


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL of N(mean, exp(logvar)) to N(0, I), summed over the latent, averaged over the batch."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(dim=1).mean()


class VAEStage:
    """Training of the mel VAE ``vae`` with its encoder (exports ``vae.*``).

    Budgets: the ``"small"`` preset (ModelConfig.small(), batch 4 of 1.28 s, 450 steps, no
    discriminator) takes about 12 minutes on 2 CPU cores; ``"official"`` follows AudioLDM's
    recipe on GPUs; ``"tiny"`` is for tests.
    """

    name = "vae"

    def __init__(
        self,
        model_config: ModelConfig,
        config: VAETrainConfig,
        distributed: Distributed = Distributed(),
        init: Mapping[str, Tensor] | None = None,
    ) -> None:
        self.config = config
        self.vae = AutoencoderKL(model_config.vae, with_encoder=True)
        if init is not None:
            load_prefixed(self.vae, init, "vae.")
        self.vae.to(distributed.device)
        self.wrapped = distributed.wrap(_Reconstruct(self.vae))
        self.optimizer = torch.optim.AdamW(
            self.vae.parameters(), lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay
        )
        self.discriminator: PatchDiscriminator | None = None
        if config.disc_weight > 0:
            self.discriminator = PatchDiscriminator(config.disc_channels, config.disc_layers).to(distributed.device)
            self.wrapped_discriminator = distributed.wrap(self.discriminator)
            self.disc_optimizer = torch.optim.AdamW(
                self.discriminator.parameters(), lr=config.learning_rate, betas=config.betas,
                weight_decay=config.weight_decay,
            )

    def modules(self) -> dict[str, nn.Module]:
        found: dict[str, nn.Module] = {"vae": self.vae}
        if self.discriminator is not None:
            found["discriminator"] = self.discriminator
        return found

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        found = {"vae": self.optimizer}
        if self.discriminator is not None:
            found["discriminator"] = self.disc_optimizer
        return found

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        """One VAE step, then (from ``disc_start`` on) one discriminator step, on the mels of ``batch``."""
        config = self.config
        mel = vae_input(batch.audio, self.vae.config.downsample_factor)
        self.wrapped.train()
        reconstruction, mean, logvar = self.wrapped(mel)
        rec = (reconstruction - mel).abs().mean()
        kl = kl_divergence(mean, logvar)
        loss = rec + config.kl_weight * kl / mel[0].numel()
        losses = {"rec": float(rec.detach()), "kl": float(kl.detach())}
        adversarial = self.discriminator is not None and step >= config.disc_start
        if adversarial:
            generator = -self.discriminator(reconstruction).mean()
            loss = loss + config.disc_weight * generator
        clip_and_step(loss, self.vae, self.optimizer, config.grad_clip)
        losses["loss"] = float(loss.detach())
        if self.discriminator is not None:
            losses["g_adv"] = float(generator.detach()) if adversarial else 0.0
            losses["d_hinge"] = 0.0
        if adversarial:
            real = self.wrapped_discriminator(mel)
            fake = self.wrapped_discriminator(reconstruction.detach())
            disc = F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
            clip_and_step(disc, self.discriminator, self.disc_optimizer, config.grad_clip)
            losses["d_hinge"] = float(disc.detach())
        return losses

    def export(self) -> dict[str, Tensor]:
        """``vae.*`` weights (encoder included) of ``SemantiCodecModel(..., with_vae_encoder=True)``."""
        return {f"vae.{k}": v.detach().cpu().clone() for k, v in self.vae.state_dict().items()}
