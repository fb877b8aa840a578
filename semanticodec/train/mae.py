"""Stage 1: AudioMAE masked-autoencoder pre-training of the semantic encoder.

Audio-MAE (Huang et al., 2022): the normalised 128-bin Kaldi fbank window ``[B, 1024, 128]``
(exactly what the codec feeds the encoder, :func:`~semanticodec.features.audiomae_fbank`) is
cut into 16 x 16 patches; 80 % of them are dropped at random (unstructured masking), the
encoder (:class:`~semanticodec.nn.vit.AudioMAEEncoder`: patch embedding, fixed sin-cos
positions, CLS, blocks, final norm) sees only the visible ones, and a lightweight transformer
decoder reconstructs every patch. The loss is the MSE to per-patch-normalised target pixels
over the masked patches only. AdamW (betas 0.9 / 0.95, weight decay 0.05 on matrices only),
linear warmup then cosine decay to zero. The decoder's parameter names are the official
ones (:func:`~semanticodec.nn.vit.mae_decoder_keys`); only the encoder is exported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from semanticodec.config import ModelConfig
from semanticodec.constants import FRAMES_PER_WINDOW, SAMPLE_RATE
from semanticodec.features import FBANK_FRAME_LENGTH, FBANK_FRAME_SHIFT, audiomae_fbank
from semanticodec.nn.vit import AudioMAEConfig, AudioMAEEncoder, Block, audiomae_pos_embed
from semanticodec.train.data import Batch
from semanticodec.train.loop import Distributed, TrainConfig, clip_and_step, warmup_cosine

WINDOW_CROP_SECONDS = (FRAMES_PER_WINDOW * FBANK_FRAME_SHIFT + FBANK_FRAME_LENGTH - FBANK_FRAME_SHIFT) / SAMPLE_RATE
"""Crop length (10.255 s = 164080 samples) whose Kaldi fbank has exactly 1024 frames."""


@dataclass(frozen=True)
class MAETrainConfig(TrainConfig):
    """Audio-MAE hyper-parameters on top of :class:`TrainConfig`.

    ``mask_ratio`` of the patches are hidden; the decoder is ``decoder_depth`` blocks of
    ``decoder_dim`` width with ``decoder_heads`` heads. The learning rate rises linearly over
    ``warmup_steps`` and then follows a cosine to zero at ``steps``; AdamW uses ``betas`` and
    ``weight_decay`` (matrices only). ``norm_pix_loss`` normalises each target patch to zero
    mean and unit variance.
    """

    mask_ratio: float = 0.8
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    warmup_steps: int = 0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {self.mask_ratio}")
        if self.decoder_dim < 4 or self.decoder_dim % 4 or self.decoder_depth < 1 or self.decoder_heads < 1:
            raise ValueError(
                f"decoder_dim must be a positive multiple of 4 and decoder_depth, decoder_heads >= 1, got "
                f"{self.decoder_dim}, {self.decoder_depth}, {self.decoder_heads}"
            )
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim {self.decoder_dim} is not divisible by decoder_heads {self.decoder_heads}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError(f"warmup_steps and weight_decay must be >= 0, got {self.warmup_steps}, {self.weight_decay}")

    def learning_rate_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): linear warmup, then cosine to zero."""
        return warmup_cosine(step, self.learning_rate, self.warmup_steps, self.steps)


PRESETS: dict[str, MAETrainConfig] = {
    # Official Audio-MAE: AudioSet-2M, 32 epochs of effective batch 512 (64 per GPU x 8 GPUs),
    # 3 warmup epochs; lr 2e-4 is for that effective batch (scale linearly for others).
    "official": MAETrainConfig(
        steps=125_000, batch_size=64, crop_seconds=WINDOW_CROP_SECONDS, learning_rate=2e-4,
        log_every=100, checkpoint_every=2000, warmup_steps=11_700,
    ),
    # ModelConfig.small() encoder on 2 CPU cores: about 0.6 s per step, 15 minutes.
    "small": MAETrainConfig(
        steps=1500, batch_size=8, crop_seconds=WINDOW_CROP_SECONDS, learning_rate=1e-3,
        log_every=10, checkpoint_every=100, warmup_steps=60, decoder_dim=128, decoder_depth=2, decoder_heads=4,
    ),
    # Tests: three steps of a batch of two windows.
    "tiny": MAETrainConfig(
        steps=3, batch_size=2, crop_seconds=WINDOW_CROP_SECONDS, learning_rate=1e-3,
        log_every=1, checkpoint_every=1, warmup_steps=1, decoder_dim=16, decoder_depth=1, decoder_heads=2,
    ),
}


class MAEDecoder(nn.Module):
    """The Audio-MAE decoder: visible encoder tokens ``[B, 1 + V, D]`` plus mask tokens ->
    pixel predictions ``[B, num_patches, patch_size**2]`` (patches in encoder order)."""

    def __init__(self, encoder: AudioMAEConfig, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.config = block = AudioMAEConfig(
            num_frames=encoder.num_frames, num_mels=encoder.num_mels, patch_size=encoder.patch_size,
            embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=encoder.mlp_ratio, contextual_depth=-1,
            norm_eps=encoder.norm_eps,
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed = nn.Parameter(
            audiomae_pos_embed(dim, block.time_patches, block.freq_patches), requires_grad=False
        )
        self.decoder_embed = nn.Linear(encoder.embed_dim, dim)
        self.decoder_blocks = nn.ModuleList(Block(block) for _ in range(depth))
        self.decoder_norm = nn.LayerNorm(dim, eps=encoder.norm_eps)
        self.decoder_pred = nn.Linear(dim, encoder.patch_size**2)

    def forward(self, latent: Tensor, restore: Tensor) -> Tensor:
        """``latent`` ``[B, 1 + V, D_enc]`` (CLS first), ``restore`` ``[B, L]`` the inverse of the
        shuffle that put the V visible patches first -> ``[B, L, patch_size**2]``."""
        x = self.decoder_embed(latent)
        batch, visible = x.shape[0], x.shape[1] - 1
        masks = self.mask_token.expand(batch, restore.shape[1] - visible, -1)
        patches = torch.cat([x[:, 1:], masks], dim=1)
        patches = torch.gather(patches, 1, restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


def patchify(fbank: Tensor, patch_size: int) -> Tensor:
    """``[B, T, F]`` -> ``[B, (T/p) * (F/p), p * p]``, patches time-major as in the encoder."""
    return rearrange(fbank, "b (t p) (f q) -> b (t f) (p q)", p=patch_size, q=patch_size)


class MaskedAutoencoder(nn.Module):
    """Encoder + decoder; ``forward(fbank)`` returns the masked-patch loss (a scalar)."""

    def __init__(self, encoder: AudioMAEEncoder, decoder: MAEDecoder, mask_ratio: float, norm_pix_loss: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss

    def encode_visible(self, fbank: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encode a random ``1 - mask_ratio`` of the patches of ``fbank`` ``[B, T, F]``.

        Returns ``latent`` ``[B, 1 + V, D]`` (after the final norm), ``mask`` ``[B, L]`` (1 =
        hidden) and ``restore`` ``[B, L]`` (the un-shuffle indices).
        """
        enc = self.encoder
        x = enc.patch_embed(fbank.unsqueeze(1)) + enc.pos_embed[:, 1:]
        batch, length, dim = x.shape
        keep = max(1, int(length * (1.0 - self.mask_ratio)))
        shuffle = torch.rand(batch, length, device=x.device).argsort(dim=1)
        restore = shuffle.argsort(dim=1)
        x = torch.gather(x, 1, shuffle[:, :keep].unsqueeze(-1).expand(-1, -1, dim))
        mask = torch.ones(batch, length, device=x.device)
        mask[:, :keep] = 0.0
        mask = torch.gather(mask, 1, restore)
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(batch, -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in enc.blocks:
            x = block(x)
        return enc.norm(x), mask, restore

    def forward(self, fbank: Tensor) -> Tensor:
        latent, mask, restore = self.encode_visible(fbank)
        prediction = self.decoder(latent, restore)
        target = patchify(fbank, self.encoder.config.patch_size)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = (prediction - target).pow(2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()


def init_mae_weights(module: nn.Module) -> None:
    """The Audio-MAE initialisation: Xavier-uniform linear and patch-embedding weights, zero
    biases, unit LayerNorms, CLS and mask tokens ~ N(0, 0.02)."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Conv2d):
            nn.init.xavier_uniform_(sub.weight.view(sub.weight.shape[0], -1))
            nn.init.zeros_(sub.bias)
        for name in ("cls_token", "mask_token"):
            token = getattr(sub, name, None)
            if isinstance(token, nn.Parameter):
                nn.init.normal_(token, std=0.02)


class MAEStage:
    """Audio-MAE pre-training of ``audiomae`` (exports ``audiomae.*``).

    Budgets: the ``"small"`` preset (ModelConfig.small(), batch 8 of 10.24 s windows, 1500
    steps) takes about 15 minutes on 2 CPU cores; ``"official"`` is the paper's AudioSet-2M
    recipe for 8 GPUs; ``"tiny"`` is for tests.
    """

    name = "mae"

    def __init__(
        self,
        model_config: ModelConfig,
        config: MAETrainConfig,
        distributed: Distributed = Distributed(),
        init: Mapping[str, Tensor] | None = None,
    ) -> None:
        self.config = config
        encoder = AudioMAEEncoder(model_config.audiomae)
        decoder = MAEDecoder(model_config.audiomae, config.decoder_dim, config.decoder_depth, config.decoder_heads)
        init_mae_weights(decoder)
        if init is None:
            init_mae_weights(encoder)
        else:
            load_prefixed(encoder, init, "audiomae.")
        self.model = MaskedAutoencoder(encoder, decoder, config.mask_ratio, config.norm_pix_loss).to(distributed.device)
        self.wrapped = distributed.wrap(self.model)
        self.optimizer = torch.optim.AdamW(
            _decay_groups(self.model, config.weight_decay), lr=config.learning_rate, betas=config.betas
        )

    def modules(self) -> dict[str, nn.Module]:
        return {"mae": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"mae": self.optimizer}

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        """One AdamW step on the masked-patch MSE of the fbank windows of ``batch``."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate_at(step)
        fbank = audiomae_fbank(batch.audio, self.model.encoder.config.num_frames)
        self.wrapped.train()
        loss = self.wrapped(fbank)
        clip_and_step(loss, self.model, self.optimizer, self.config.grad_clip)
        return {"loss": float(loss.detach()), "lr": self.optimizer.param_groups[0]["lr"]}

    def export(self) -> dict[str, Tensor]:
        """``audiomae.*`` weights of :class:`~semanticodec.model.SemantiCodecModel`."""
        return {f"audiomae.{k}": v.detach().cpu().clone() for k, v in self.model.encoder.state_dict().items()}


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on matrices, none on biases, norms and tokens."""
    decay, plain = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (plain if parameter.ndim < 2 or name.endswith(("cls_token", "mask_token")) else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def load_prefixed(module: nn.Module, weights: Mapping[str, Tensor], prefix: str) -> None:
    """Load the ``prefix``-ed entries of exported ``weights`` into ``module`` (all keys required)."""
    state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"init weights do not fit {prefix}*: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"init weights: {prefix}{key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
    module.load_state_dict(state)
