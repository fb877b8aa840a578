"""Stage 5: the acoustic encoder + VQ trained jointly with the latent diffusion UNet.

As in SemantiCodec, the acoustic branch has no loss of its own besides the VQ commitment: it
learns to carry what the semantic tokens miss because its quantized output conditions the
UNet, whose v-prediction loss back-propagates through the straight-through VQ into the
BiLSTM. The frozen parts run once over a set of 10.24 s windows (:func:`encode_windows`);
training then draws batches of those windows (:class:`CachedWindows`). Per window:

1. frozen AudioMAE on the fbank → features ``[B, N, D]`` → nearest semantic centroid;
2. frozen VAE encoder on the 64-bin log-mel → latent sample ``z`` (× ``scale_factor``, set
   at step 0 to 1 / std of the latents, as LDM's ``scale_by_std``);
3. acoustic BiLSTM on ``[features ‖ centroid]`` → pre-VQ → code space (the pre-VQ vectors,
   or their l2-normalised projection with factorised codes) → nearest code (EMA codebook,
   k-means-initialised, with dead-code restarts; commitment loss ``commitment`` ×
   |vector − code|² on the rows holding audio);
4. context ``[code ‖ centroid ‖ position]`` with padded rows marked −1, replaced by the
   unconditional context (zeros ‖ position) with probability ``uncond_prob`` (classifier-free
   guidance dropout), or, for models that decode the semantic stream alone, with its code
   part zeroed with probability ``acoustic_drop_prob``;
5. ``t ~ U{0..T-1}``, ``x_t = q_sample(z, t, ε)``, loss = |UNet(x_t, t, context) − v|²;
6. AdamW step, then the exponential moving average of the weights (the exported weights).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semanticodec import kmeans
from semanticodec.atomic import atomic_write
from semanticodec.conditioning import decoder_context, unconditional_context
from semanticodec.config import ModelConfig
from semanticodec.constants import WINDOW_SAMPLES
from semanticodec.diffusion import NoiseSchedule
from semanticodec.features import audiomae_fbank, mel64
from semanticodec.model import SemantiCodecModel
from semanticodec.train.data import CropSampler
from semanticodec.train.loop import Distributed, TrainConfig, clip_and_step, warmup_cosine


@dataclass(frozen=True)
class LDMTrainConfig(TrainConfig):
    """Joint acoustic-encoder + UNet training.

    Condition dropout: each item's whole condition is replaced by the unconditional context
    with probability ``uncond_prob`` (classifier-free guidance), else, for a model config with
    ``semantic_only_decoding``, its acoustic stream alone is zeroed with probability
    ``acoustic_drop_prob`` (semantic-only decoding).

    Acoustic VQ: ``commitment`` weight; codebook EMA with ``codebook_decay``; the codebook is
    k-means-initialised (``init_iterations`` Lloyd iterations) on the code-space vectors of the
    first ``init_windows`` cached windows; a code unused for ``dead_code_steps`` steps is
    restarted on a vector of the batch drawn with probability proportional to its squared
    quantisation error. Padded rows take no part in the codebook.

    Weights: an exponential moving average with decay ``min(ema_decay, (1 + step) / (10 +
    step))`` of the trained weights is kept (in the checkpoint) and exported. Learning rate
    (:func:`~semanticodec.train.loop.warmup_cosine`): linear warm-up over ``warmup_steps``,
    then a cosine down to ``min_lr_ratio`` x ``learning_rate`` at ``decay_steps`` (None: at
    ``steps``), constant after. ``windows``: random 10.24 s windows whose frozen-part outputs
    are cached (:func:`encode_windows`; 256 KiB each at the small size) and drawn from.
    """

    windows: int = 1000
    uncond_prob: float = 0.1
    acoustic_drop_prob: float = 0.1
    commitment: float = 0.25
    codebook_decay: float = 0.99
    dead_code_steps: int = 50
    init_windows: int = 64
    init_iterations: int = 10
    ema_decay: float = 0.999
    warmup_steps: int = 100
    decay_steps: int | None = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        probs = (self.uncond_prob, self.acoustic_drop_prob)
        if min(probs) < 0 or sum(probs) > 1:
            raise ValueError(f"uncond_prob and acoustic_drop_prob must be >= 0 with a sum <= 1: {self}")
        if not 0 <= self.codebook_decay < 1 or not 0 <= self.ema_decay < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"codebook_decay and ema_decay must lie in [0, 1) and min_lr_ratio in [0, 1]: {self}")
        counts = (self.windows, self.dead_code_steps, self.init_windows, self.init_iterations, self.warmup_steps)
        if min(counts) < 1 or (self.decay_steps is not None and self.decay_steps < 1):
            raise ValueError(f"windows, dead_code_steps, init_windows, init_iterations, warmup_steps, decay_steps must be >= 1: {self}")

    def learning_rate_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based)."""
        horizon = self.steps if self.decay_steps is None else self.decay_steps
        return warmup_cosine(step, self.learning_rate, self.warmup_steps, horizon, self.min_lr_ratio * self.learning_rate)

    def ema_decay_at(self, step: int) -> float:
        """Decay of the weight average after step ``step`` (warmed up over the first steps)."""
        return min(self.ema_decay, (1 + step) / (10 + step))


PRESETS: dict[str, LDMTrainConfig] = {
    "official": LDMTrainConfig(
        steps=400_000, batch_size=8, crop_seconds=10.24, learning_rate=5e-5, checkpoint_every=5000, log_every=100,
        warmup_steps=1000, windows=100_000, init_windows=256, ema_decay=0.9999, min_lr_ratio=1.0,
    ),
    "small": LDMTrainConfig(
        steps=30_000, batch_size=8, crop_seconds=10.24, learning_rate=4e-4, checkpoint_every=200, log_every=20,
        warmup_steps=1000, dead_code_steps=20, windows=2000, init_windows=128, ema_decay=0.999,
    ),
    "tiny": LDMTrainConfig(
        steps=3, batch_size=2, crop_seconds=10.24, learning_rate=1e-3, checkpoint_every=2, log_every=1, warmup_steps=1,
        dead_code_steps=1, windows=4, init_windows=2, init_iterations=2, ema_decay=0.5, acoustic_drop_prob=0.5,
    ),
}
"""``small``: for :meth:`ModelConfig.small` on CPU, a long resumable run on one core: 2.9 CPU
seconds per step on one thread (about 24 h for the 30 000 steps; checkpoints every 10 min); a
shorter or longer run with a finished schedule: ``--steps N`` (the cosine then ends at N).
``official``: the official recipe (constant learning rate after warm-up, EMA 0.9999), for
GPUs. ``tiny``: tests."""


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
        """The windows of step ``step``, on the device the cached windows are on."""
        rows = torch.from_numpy(np.random.default_rng([self.seed, self.rank, step]).integers(0, len(self), self.batch_size))
        rows = rows.to(self.windows.valid.device)
        return WindowBatch(*(getattr(self.windows, f.name)[rows] for f in fields(WindowBatch)))


def save_windows(windows: WindowBatch, path: str | os.PathLike) -> None:
    """Write cached windows atomically (read back with :func:`load_windows`)."""
    with atomic_write(path, overwrite=True) as file:
        torch.save({f.name: getattr(windows, f.name) for f in fields(WindowBatch)}, file)


def load_windows(path: str | os.PathLike) -> WindowBatch:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return WindowBatch(**state)


class _CodebookStats(nn.Module):
    """Training state of the acoustic codebook (the codebook itself lives in the acoustic
    encoder): EMA ``cluster_size`` ``[K]`` and ``embed_sum`` ``[K, d]``, the step each code
    was ``last_used``, and whether it is ``initialised``."""

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
        drop_acoustic: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """v-prediction ``[B, C, H, W]`` and code-space vectors ``[B, N, d]``; ``quantize`` maps
        code-space vectors to their (detached) codes; ``drop`` / ``drop_acoustic`` ``[B]`` bool
        select the items decoded unconditionally / from the semantic stream alone."""
        acoustic = self.acoustic
        vectors = acoustic.code_space(acoustic.project(acoustic.lstm_input(features, centroids, valid)))
        codes = vectors + (quantize(vectors) - vectors).detach()
        acoustic_vectors = acoustic.from_code_space(codes).masked_fill(drop_acoustic[:, None, None], 0.0)
        context = decoder_context(acoustic_vectors, centroids, valid, self.pe_dim)
        uncond = unconditional_context(
            context.shape[0], context.shape[1], self.feature_dim, device=context.device, pe_dim=self.pe_dim
        )
        context = torch.where(drop[:, None, None], uncond, context)
        return self.unet(x_t, t, context), vectors


class LDMStage:
    """Trains ``acoustic.*`` and ``unet.*`` (and sets ``schedule.scale_factor``); exports the
    weight average (EMA) of ``acoustic.*`` and ``unet.*``.

    Batches come from :class:`CachedWindows` (the frozen parts' outputs, computed once by
    :func:`encode_windows`); ``codebook`` is the semantic k-means codebook ``[V, D]``;
    ``windows`` (the cached windows) gives the vectors the acoustic codebook is k-means-
    initialised on (None: the first batch's). ``init`` may give earlier
    ``acoustic.*``/``unet.*``/``schedule.*`` weights to continue from (the codebook and the
    latent scale ``schedule.scale_factor`` are then taken as they are; without ``init`` the
    scale is set at step 0).

    Under ``torch.autocast`` the codebook (nearest codes, EMA updates, restarts, k-means
    initialisation) still works in float32.
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
        windows: WindowBatch | None = None,
    ) -> None:
        self.config = config
        self.distributed = distributed
        self.acoustic_drop_prob = config.acoustic_drop_prob if model_config.semantic_only_decoding else 0.0
        if model_config.semantic_only_decoding and not self.acoustic_drop_prob > 0:
            raise ValueError("a model config with semantic_only_decoding needs acoustic_drop_prob > 0")
        device = distributed.device
        schedule = replace(model_config.schedule, scale_factor=1.0)
        self.model = SemantiCodecModel(replace(model_config, schedule=schedule), codebook)
        if init is not None:
            self.model.load_weights(init, ("acoustic.", "unet.", "schedule."))
        self.scale_from_init = init is not None
        self.model.to(device)
        self.init_windows = None if windows is None else WindowBatch(
            *(getattr(windows, f.name)[: config.init_windows] for f in fields(WindowBatch))
        )
        self.stats = _CodebookStats(model_config.acoustic_vocab_size, model_config.acoustic.lookup_dim).to(device)
        if init is not None:
            self.stats.initialised.fill_(True)
        self.trained = _Joint(self.model)
        self.averaged = copy.deepcopy(self.trained).requires_grad_(False)
        self.wrapped = distributed.wrap(self.trained)
        self.optimizer = torch.optim.AdamW(
            self.trained.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )

    @property
    def schedule(self) -> NoiseSchedule:
        return self.model.schedule

    def modules(self) -> dict[str, nn.Module]:
        return {"trained": self.trained, "schedule": self.model.schedule, "codebook": self.stats, "ema": self.averaged}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.optimizer}

    @torch.no_grad()
    def _initialise_codebook(self, batch: WindowBatch) -> None:
        """k-means of the code-space vectors of the init windows (or of ``batch``) on every code."""
        source = self.init_windows if self.init_windows is not None else batch
        device = self.distributed.device
        acoustic = self.model.acoustic
        parts = []
        for rows in torch.arange(len(source.valid)).split(self.config.batch_size):
            part = WindowBatch(*(getattr(source, f.name)[rows] for f in fields(WindowBatch))).to(device)
            centroids = self.model.semantic.lookup(part.semantic_ids)
            vectors = acoustic.code_space(acoustic.project(acoustic.lstm_input(part.features.float(), centroids, part.valid)))
            parts.append(vectors[_valid_rows(part.valid, vectors.shape[1])].float())
        vectors = torch.cat(parts)
        size = acoustic.config.codebook_size
        if len(vectors) >= size:
            result = kmeans.fit(
                vectors.cpu().numpy(), size, niter=self.config.init_iterations, seed=self.config.seed, init="random",
                max_points_per_centroid=None, progress=False, distributed=False,
            )
            codes = torch.from_numpy(result.centroids).to(device)
        else:
            generator = torch.Generator().manual_seed(self.config.seed)
            codes = vectors[torch.randint(len(vectors), (size,), generator=generator).to(device)]
        if acoustic.config.code_dim is not None:
            codes = F.normalize(codes, dim=-1)
        if self.distributed.enabled:
            torch.distributed.broadcast(codes, 0)
        acoustic.quantizer._codebook.embed[0] = codes
        self.stats.embed_sum.copy_(codes)
        self.stats.cluster_size.fill_(1.0)
        self.stats.initialised.fill_(True)

    @torch.no_grad()
    def _quantize(self, vectors: Tensor, valid: Tensor, step: int) -> Tensor:
        """Nearest codes of code-space ``vectors`` ``[B, N, d]`` (detached), after the codebook
        update on the valid rows (``valid`` ``[B]``)."""
        acoustic = self.model.acoustic
        vectors = vectors.detach().float()
        with torch.autocast(vectors.device.type, enabled=False):
            self._last_ids = acoustic.nearest(vectors)
            self._valid_rows = _valid_rows(valid, vectors.shape[1])
            self._update_codebook(self._last_ids[self._valid_rows], vectors[self._valid_rows], step)
            return acoustic.codes[self._last_ids]

    def _update_codebook(self, ids: Tensor, flat: Tensor, step: int) -> None:
        """EMA update of the codes used by ``ids`` ``[M]`` (of code-space vectors ``flat`` ``[M, d]``),
        then restarts of the codes unused for ``dead_code_steps`` steps."""
        size = self.model.acoustic.config.codebook_size
        onehot_count = torch.bincount(ids, minlength=size).to(flat.dtype)
        embed_sum = torch.zeros(size, flat.shape[1], device=flat.device).index_add_(0, ids, flat)
        if self.distributed.enabled:
            torch.distributed.all_reduce(onehot_count)
            torch.distributed.all_reduce(embed_sum)
        decay = self.config.codebook_decay
        self.stats.cluster_size.mul_(decay).add_(onehot_count, alpha=1 - decay)
        self.stats.embed_sum.mul_(decay).add_(embed_sum, alpha=1 - decay)
        n = self.stats.cluster_size.sum()
        smoothed = (self.stats.cluster_size + 1e-5) / (n + size * 1e-5) * n
        means = self.stats.embed_sum / smoothed[:, None]
        if self.model.acoustic.config.code_dim is not None:
            means = F.normalize(means, dim=-1)
        used = onehot_count > 0
        self.model.acoustic.quantizer._codebook.embed[0, used] = means[used]
        self.stats.last_used[used] = step
        dead = torch.nonzero(step - self.stats.last_used >= self.config.dead_code_steps).flatten()
        self._restarts = int(dead.numel())
        if dead.numel() and len(flat):
            self._restart(dead, flat, ids, step)
            self.stats.last_used[dead] = step

    def _restart(self, codes: Tensor, flat: Tensor, ids: Tensor, step: int) -> None:
        """Set ``codes`` to vectors of ``flat`` drawn with probability proportional to their
        squared distance from their code ``ids`` (the same on every process)."""
        acoustic = self.model.acoustic
        generator = torch.Generator(device="cpu").manual_seed(self.config.seed * 1_000_003 + step)
        error = (flat - acoustic.codes[ids]).pow(2).sum(dim=1).double().cpu() + 1e-12
        rows = torch.multinomial(error, len(codes), replacement=True, generator=generator).to(flat.device)
        picked = flat[rows] + 1e-3 * torch.randn(len(codes), flat.shape[1], generator=generator).to(flat.device)
        if acoustic.config.code_dim is not None:
            picked = F.normalize(picked, dim=-1)
        if self.distributed.enabled:
            torch.distributed.broadcast(picked, 0)
        acoustic.quantizer._codebook.embed[0, codes] = picked
        self.stats.embed_sum[codes] = picked
        self.stats.cluster_size[codes] = 1.0

    @torch.no_grad()
    def _update_average(self, step: int) -> None:
        """Move the weight average towards the trained weights; buffers (the codebook) are copied."""
        weight = 1.0 - self.config.ema_decay_at(step)
        for average, live in zip(self.averaged.parameters(), self.trained.parameters()):
            average.lerp_(live, weight)
        for average, live in zip(self.averaged.buffers(), self.trained.buffers()):
            average.copy_(live)

    def train_step(self, batch: WindowBatch, step: int) -> dict[str, float]:
        config = self.config
        features, valid = batch.features.float(), batch.valid
        centroids = self.model.semantic.lookup(batch.semantic_ids)
        if not bool(self.stats.initialised):
            self._initialise_codebook(batch)
        latent = batch.mean.float() + torch.randn_like(batch.mean, dtype=torch.float32) * (0.5 * batch.logvar.float()).exp()
        if step == 0 and not self.scale_from_init:
            std = self.distributed.mean(float(latent.std()))
            self.schedule.scale_factor.fill_(1.0 / std)
        z = latent * self.schedule.scale_factor
        draw = torch.rand(z.shape[0], device=z.device)
        drop = draw < config.uncond_prob
        drop_acoustic = ~drop & (draw < config.uncond_prob + self.acoustic_drop_prob)
        t = torch.randint(0, self.schedule.num_timesteps, (z.shape[0],), device=z.device)
        noise = torch.randn_like(z)
        v, vectors = self.wrapped(
            features, centroids, valid, lambda x: self._quantize(x, valid, step),
            self.schedule.q_sample(z, t, noise), t, drop, drop_acoustic,
        )
        diffusion = F.mse_loss(v, self.schedule.v_target(z, noise, t))
        rows = self._valid_rows
        commitment = F.mse_loss(vectors[rows], self.model.acoustic.codes[self._last_ids[rows]])
        loss = diffusion + config.commitment * commitment
        lr = config.learning_rate_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        clip_and_step(loss, self.trained, self.optimizer, config.grad_clip)
        self._update_average(step)
        ids = self._last_ids[rows]
        return {
            "v_mse": float(diffusion.detach()),
            "commitment": float(commitment.detach()),
            "code_perplexity": code_perplexity(ids, self.model.acoustic.config.codebook_size),
            "codes_used": float(len(torch.unique(ids))),
            "code_restarts": float(self._restarts),
            "lr": lr,
        }

    def export(self) -> dict[str, Tensor]:
        """The weight average of ``acoustic.*`` and ``unet.*`` and the live ``schedule.*``."""
        state = {f"acoustic.{k}": v for k, v in self.averaged.acoustic.state_dict().items()}
        state.update({f"unet.{k}": v for k, v in self.averaged.unet.state_dict().items()})
        state.update({f"schedule.{k}": v for k, v in self.model.schedule.state_dict().items()})
        return state


def checkpoint_weights(state: dict) -> dict[str, Tensor] | None:
    """What :meth:`LDMStage.export` would write, from a loaded ``checkpoint.pt`` of an ldm run
    (its weight average and noise schedule), so that a run can be assembled and measured while
    it trains on; None when ``state`` is not an ldm run's checkpoint."""
    modules = state.get("modules") if isinstance(state, dict) else None
    if not isinstance(modules, dict) or not {"ema", "schedule", "codebook"} <= modules.keys():
        return None
    weights = {k: v for k, v in modules["ema"].items() if k.startswith(("acoustic.", "unet."))}
    weights.update({f"schedule.{k}": v for k, v in modules["schedule"].items()})
    return weights

def _valid_rows(valid: Tensor, n_tokens: int) -> Tensor:
    """``[B, N]`` bool: rows of B windows that hold audio (``valid`` ``[B]`` lengths)."""
    return torch.arange(n_tokens, device=valid.device) < valid[:, None]


def code_perplexity(ids: Tensor, size: int) -> float:
    """exp(entropy) of the code distribution of ``ids`` (any shape) over ``size`` codes; 0 for no ids."""
    if ids.numel() == 0:
        return 0.0
    p = torch.bincount(ids.reshape(-1), minlength=size).double()
    p = p / p.sum()
    return float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
