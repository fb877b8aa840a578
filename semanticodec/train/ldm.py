"""Stage 5: the acoustic encoder + VQ trained jointly with the latent diffusion UNet.

As in SemantiCodec, the acoustic branch has no loss of its own besides the VQ commitment: it
learns to carry what the semantic tokens miss because its quantized output conditions the
UNet, whose v-prediction loss back-propagates through the straight-through VQ into the
BiLSTM. The frozen parts run once over a set of 10.24 s windows (:func:`encode_windows`);
training then draws batches of those windows (:class:`CachedWindows`). Per window:

1. frozen AudioMAE on the fbank → features ``[B, N, D]`` → nearest semantic centroid;
2. frozen VAE encoder on the 64-bin log-mel → latent sample ``z`` (× ``scale_factor``, set
   at step 0 to 1 / std of the latents, as LDM's ``scale_by_std``);
3. acoustic BiLSTM on ``[features ‖ centroid]`` → pre-VQ → nearest code (EMA codebook with
   dead-code restarts, commitment loss ``commitment`` × |pre-VQ − code|²);
4. context ``[code ‖ centroid ‖ position]`` with padded rows marked −1, replaced by the
   unconditional context (zeros ‖ position) with probability ``uncond_prob`` (classifier-free
   guidance dropout);
5. ``t ~ U{0..T-1}``, ``x_t = q_sample(z, t, ε)``, loss = |UNet(x_t, t, context) − v|².
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semanticodec.atomic import atomic_write
from semanticodec.conditioning import decoder_context, unconditional_context
from semanticodec.config import ModelConfig
from semanticodec.constants import WINDOW_SAMPLES
from semanticodec.diffusion import NoiseSchedule
from semanticodec.features import audiomae_fbank, mel64
from semanticodec.model import SemantiCodecModel
from semanticodec.train.data import CropSampler
from semanticodec.train.loop import Distributed, TrainConfig


@dataclass(frozen=True)
class LDMTrainConfig(TrainConfig):
    """Joint acoustic-encoder + UNet training.

    ``uncond_prob``: probability of dropping an item's condition (CFG); ``commitment``: VQ
    commitment weight; ``ema_decay``: codebook EMA; ``dead_code_steps``: a code unused for
    this many steps is restarted on a random pre-VQ vector of the batch; ``warmup_steps``:
    linear learning-rate warm-up; ``windows``: random 10.24 s windows whose frozen-part outputs
    are cached (:func:`encode_windows`; 128 kB each at the small size) and drawn from.
    """

    windows: int = 1000
    uncond_prob: float = 0.1
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_code_steps: int = 50
    warmup_steps: int = 100
    weight_decay: float = 0.0


PRESETS: dict[str, LDMTrainConfig] = {
    "official": LDMTrainConfig(
        steps=400_000, batch_size=8, crop_seconds=10.24, learning_rate=5e-5, checkpoint_every=5000, log_every=100,
        warmup_steps=1000, windows=100_000,
    ),
    "small": LDMTrainConfig(
        steps=4200, batch_size=8, crop_seconds=10.24, learning_rate=4e-4, checkpoint_every=100, log_every=10,
        warmup_steps=50, dead_code_steps=20, windows=1000,
    ),
    "tiny": LDMTrainConfig(
        steps=3, batch_size=2, crop_seconds=10.24, learning_rate=1e-3, checkpoint_every=2, log_every=1, warmup_steps=1,
        dead_code_steps=1, windows=4,
    ),
}
"""``small``: 1.3-1.5 s per step on 2 idle CPU cores (about 1 h 40 min; the bundled model's run);
``official``: a GPU run."""


@dataclass(frozen=True)
class WindowBatch:
    """Frozen-part outputs of B windows: AudioMAE ``features`` ``[B, N, D]`` (float16),
    ``semantic_ids`` ``[B, N]``, VAE posterior ``mean``/``logvar`` ``[B, C, H, W]`` (float16),
    ``valid`` ``[B]`` tokens holding audio."""

    features: Tensor
    semantic_ids: Tensor
    mean: Tensor
    logvar: Tensor
    valid: Tensor

    def to(self, device: torch.device | str) -> WindowBatch:
        return WindowBatch(*(getattr(self, f.name).to(device) for f in fields(self)))


@torch.no_grad()
def encode_windows(
    model: SemantiCodecModel, sampler: CropSampler, count: int, vae_chunk_frames: int = 256, progress: bool = True
) -> WindowBatch:
    """Run the frozen parts (AudioMAE + semantic quantizer, VAE encoder) once over ``count``
    random 10.24 s windows drawn by ``sampler`` (its crops must be >= 10.24 s).

    The VAE encodes the mel in chunks of ``vae_chunk_frames`` frames (the length it was
    trained on; its mid-block attention grows with the square of the length).
    """
    if sampler.crop_samples < WINDOW_SAMPLES:
        raise ValueError(f"LDM windows need crops of >= {WINDOW_SAMPLES} samples, got {sampler.crop_samples}")
    frames = model.config.audiomae.num_frames
    device = next(model.parameters()).device
    parts: list[WindowBatch] = []
    done, step = 0, 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, desc="ldm windows", unit="window", dynamic_ncols=True)
    while done < count:
        batch = sampler.batch(step).to(device)
        step += 1
        audio = batch.window()
        features = model.semantic_features(audiomae_fbank(audio, frames))
        mel = mel64(audio, framing="audioldm_train")[:, :, :frames].transpose(1, 2).unsqueeze(1)
        posterior = [model.vae.encode(chunk) for chunk in mel.split(vae_chunk_frames, dim=2)]
        parts.append(
            WindowBatch(
                features=features.half().cpu(),
                semantic_ids=model.semantic.quantize(features).cpu(),
                mean=torch.cat([p[0] for p in posterior], dim=2).half().cpu(),
                logvar=torch.cat([p[1] for p in posterior], dim=2).half().cpu(),
                valid=batch.window_tokens(model.tokens_per_window).cpu(),
            )
        )
        done += len(audio)
        if bar is not None:
            bar.update(len(audio))
    if bar is not None:
        bar.close()
    return WindowBatch(*(torch.cat([getattr(p, f.name) for p in parts])[:count] for f in fields(WindowBatch)))


class CachedWindows:
    """Batches of cached windows; like :class:`~semanticodec.train.data.CropSampler`, a step's
    batch depends only on ``(seed, rank, step)``."""

    def __init__(self, windows: WindowBatch, batch_size: int, seed: int = 0, rank: int = 0) -> None:
        self.windows, self.batch_size, self.seed, self.rank = windows, int(batch_size), int(seed), int(rank)

    def __len__(self) -> int:
        return len(self.windows.valid)

    def batch(self, step: int) -> WindowBatch:
        rows = torch.from_numpy(np.random.default_rng([self.seed, self.rank, step]).integers(0, len(self), self.batch_size))
        return WindowBatch(*(getattr(self.windows, f.name)[rows] for f in fields(WindowBatch)))


def save_windows(windows: WindowBatch, path: str | os.PathLike) -> None:
    """Write cached windows atomically (read back with :func:`load_windows`)."""
    with atomic_write(path, overwrite=True) as file:
        torch.save({f.name: getattr(windows, f.name) for f in fields(WindowBatch)}, file)


def load_windows(path: str | os.PathLike) -> WindowBatch:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return WindowBatch(**state)


class _EMACodebook(nn.Module):
    """EMA statistics of the acoustic codebook (training only; the codebook itself lives in
    the acoustic encoder)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("cluster_size", torch.zeros(size))
        self.register_buffer("embed_sum", torch.zeros(size, dim))
        self.register_buffer("last_used", torch.zeros(size, dtype=torch.int64))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))


class _Joint(nn.Module):
    """The trained networks in one module, so that one DDP wrapper covers the whole forward."""

    def __init__(self, model: SemantiCodecModel) -> None:
        super().__init__()
        self.acoustic = model.acoustic
        self.unet = model.unet
        self.feature_dim = model.config.feature_dim
        self.pe_dim = model.config.pe_dim

    def forward(
        self,
        features: Tensor,
        centroids: Tensor,
        valid: Tensor,
        quantize: Callable[[Tensor], Tensor],
        x_t: Tensor,
        t: Tensor,
        drop: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """v-prediction ``[B, C, H, W]`` and pre-VQ vectors ``[B, N, D]``; ``quantize`` maps
        pre-VQ vectors to their (detached) codes, ``drop`` ``[B]`` bool selects unconditional items."""
        pre_vq = self.acoustic.project(self.acoustic.lstm_input(features, centroids, valid))
        codes = pre_vq + (quantize(pre_vq) - pre_vq).detach()
        context = decoder_context(codes, centroids, valid, self.pe_dim)
        uncond = unconditional_context(
            context.shape[0], context.shape[1], self.feature_dim, device=context.device, pe_dim=self.pe_dim
        )
        context = torch.where(drop[:, None, None], uncond, context)
        return self.unet(x_t, t, context), pre_vq


class LDMStage:
    """Trains ``acoustic.*`` and ``unet.*`` (and sets ``schedule.scale_factor``).

    Batches come from :class:`CachedWindows` (the frozen parts' outputs, computed once by
    :func:`encode_windows`); ``codebook`` is the semantic k-means codebook ``[V, D]``.
    ``init`` may give earlier ``acoustic.*``/``unet.*``/``schedule.*`` weights to continue from.
    """

    name = "ldm"

    def __init__(
        self,
        model_config: ModelConfig,
        config: LDMTrainConfig,
        distributed: Distributed = Distributed(),
        init: Mapping[str, Tensor] | None = None,
        *,
        codebook: Tensor,
    ) -> None:
        self.config = config
        self.distributed = distributed
        device = distributed.device
        schedule = replace(model_config.schedule, scale_factor=1.0)
        self.model = SemantiCodecModel(replace(model_config, schedule=schedule), codebook)
        if init is not None:
            self.model.load_weights(init, ("acoustic.", "unet.", "schedule."))
        self.model.to(device)
        self.ema = _EMACodebook(model_config.acoustic_vocab_size, model_config.feature_dim).to(device)
        if init is not None:
            self.ema.initialised.fill_(True)
        self.trained = _Joint(self.model)
        self.wrapped = distributed.wrap(self.trained)
        self.optimizer = torch.optim.AdamW(
            self.trained.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )

    @property
    def schedule(self) -> NoiseSchedule:
        return self.model.schedule

    def modules(self) -> dict[str, nn.Module]:
        return {"trained": self.trained, "schedule": self.model.schedule, "ema": self.ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.optimizer}

    @torch.no_grad()
    def _quantize(self, pre_vq: Tensor, step: int) -> Tensor:
        """Nearest codes of ``pre_vq`` ``[B, N, D]`` (detached), after the EMA codebook update."""
        acoustic = self.model.acoustic
        pre_vq = pre_vq.detach()
        flat = pre_vq.reshape(-1, pre_vq.shape[-1])
        if not bool(self.ema.initialised):
            self._restart(torch.arange(acoustic.config.codebook_size, device=flat.device), flat)
            self.ema.initialised.fill_(True)
        self._last_ids = acoustic.quantize(pre_vq)
        self._update_codebook(self._last_ids.reshape(-1), flat, step)
        return acoustic.codebook[self._last_ids]

    def _update_codebook(self, ids: Tensor, flat: Tensor, step: int) -> None:
        size = self.model.acoustic.config.codebook_size
        onehot_count = torch.bincount(ids, minlength=size).to(flat.dtype)
        embed_sum = torch.zeros(size, flat.shape[1], device=flat.device).index_add_(0, ids, flat)
        if self.distributed.enabled:
            torch.distributed.all_reduce(onehot_count)
            torch.distributed.all_reduce(embed_sum)
        decay = self.config.ema_decay
        self.ema.cluster_size.mul_(decay).add_(onehot_count, alpha=1 - decay)
        self.ema.embed_sum.mul_(decay).add_(embed_sum, alpha=1 - decay)
        n = self.ema.cluster_size.sum()
        smoothed = (self.ema.cluster_size + 1e-5) / (n + size * 1e-5) * n
        codebook = self.model.acoustic.quantizer._codebook.embed
        used = onehot_count > 0
        codebook[0, used] = (self.ema.embed_sum / smoothed[:, None])[used]
        self.ema.last_used[used] = step
        dead = torch.nonzero(step - self.ema.last_used >= self.config.dead_code_steps).flatten()
        if dead.numel():
            self._restart(dead, flat)
            self.ema.last_used[dead] = step

    def _restart(self, codes: Tensor, flat: Tensor) -> None:
        """Set ``codes`` to random vectors of ``flat`` (the same on every process)."""
        generator = torch.Generator(device="cpu").manual_seed(int(codes.sum()) + len(flat))
        rows = torch.randint(len(flat), (len(codes),), generator=generator).to(flat.device)
        picked = flat[rows] + 1e-3 * torch.randn(len(codes), flat.shape[1], generator=generator).to(flat.device)
        if self.distributed.enabled:
            torch.distributed.broadcast(picked, 0)
        self.model.acoustic.quantizer._codebook.embed[0, codes] = picked
        self.ema.embed_sum[codes] = picked
        self.ema.cluster_size[codes] = 1.0

    def train_step(self, batch: WindowBatch, step: int) -> dict[str, float]:
        config = self.config
        features, valid = batch.features.float(), batch.valid
        centroids = self.model.semantic.lookup(batch.semantic_ids)
        latent = batch.mean.float() + torch.randn_like(batch.mean, dtype=torch.float32) * (0.5 * batch.logvar.float()).exp()
        if step == 0:
            std = self.distributed.mean(float(latent.std()))
            self.schedule.scale_factor.fill_(1.0 / std)
        z = latent * self.schedule.scale_factor
        drop = torch.rand(z.shape[0], device=z.device) < config.uncond_prob
        t = torch.randint(0, self.schedule.num_timesteps, (z.shape[0],), device=z.device)
        noise = torch.randn_like(z)
        v, pre_vq = self.wrapped(
            features, centroids, valid, lambda x: self._quantize(x, step), self.schedule.q_sample(z, t, noise), t, drop
        )
        diffusion = F.mse_loss(v, self.schedule.v_target(z, noise, t))
        commitment = F.mse_loss(pre_vq, self.model.acoustic.codebook[self._last_ids])
        loss = diffusion + config.commitment * commitment
        for group in self.optimizer.param_groups:
            group["lr"] = config.learning_rate * min(1.0, (step + 1) / config.warmup_steps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.trained.parameters(), config.grad_clip)
        self.optimizer.step()
        perplexity = _perplexity(self._last_ids, self.model.acoustic.config.codebook_size)
        return {"v_mse": float(diffusion.detach()), "commitment": float(commitment.detach()), "code_perplexity": perplexity}

    def export(self) -> dict[str, Tensor]:
        state = self.model.state_dict()
        return {k: v for k, v in state.items() if k.startswith(("acoustic.", "unet.", "schedule."))}


def _perplexity(ids: Tensor, size: int) -> float:
    p = torch.bincount(ids.reshape(-1), minlength=size).double()
    p = p / p.sum()
    return float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
