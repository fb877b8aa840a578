"""Mel VAE stage: train/resume/export with the tiny model, the discriminator, overfitting, API."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from semanticodec.model import SemantiCodecModel
from semanticodec.train.data import CropSampler
from semanticodec.train.loop import train
from semanticodec.train.vae import PRESETS, PatchDiscriminator, VAEStage, kl_divergence, vae_input
from synthetic import assert_resume_is_exact, fixed_batch_losses, log_rows, tone_and_noise_sampler
from tiny import tiny_config


def _sampler(config) -> CropSampler:
    return tone_and_noise_sampler(config.crop_samples, config.batch_size, 3, 2)




def test_train_resume_and_export(tmp_path: Path) -> None:
    config = PRESETS["tiny"]
    assert config.steps <= 3 and config.batch_size == 2 and config.disc_start < config.steps
    sampler = _sampler(config)
    torch.manual_seed(0)
    train(VAEStage(tiny_config(), replace(config, steps=2)), sampler, replace(config, steps=2), tmp_path, progress=False)
    stage = VAEStage(tiny_config(), config)
    assert set(stage.modules()) == set(stage.optimizers()) == {"vae", "discriminator"}
    exported = train(stage, sampler, config, tmp_path, progress=False)
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert float(rows[0]["d_hinge"]) == 0.0 and float(rows[2]["d_hinge"]) > 0.0
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("loss", "rec", "kl", "g_adv"))
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3
    weights = load_file(exported)
    assert all(k.startswith("vae.") for k in weights)
    assert any(k.startswith("vae.encoder.") for k in weights) and "vae.quant_conv.weight" in weights
    model = SemantiCodecModel(tiny_config(), with_vae_encoder=True)
    model.load_weights(weights, prefixes=("vae.",))
    fine_tune = VAEStage(tiny_config(), replace(config, disc_weight=0.0), init=weights)
    assert set(fine_tune.modules()) == {"vae"}
    assert torch.equal(fine_tune.export()["vae.quant_conv.weight"], weights["vae.quant_conv.weight"])


def test_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """With the discriminator (from step 1 on), so that both optimizers' states carry over."""
    config = replace(PRESETS["tiny"], steps=4, checkpoint_every=2)
    assert config.disc_start < config.checkpoint_every

    def stage() -> VAEStage:
        torch.manual_seed(0)
        return VAEStage(tiny_config(), config)

    assert_resume_is_exact(stage, _sampler(config), config, tmp_path)


def test_overfits_a_fixed_batch() -> None:
    config = replace(PRESETS["tiny"], steps=10, crop_seconds=0.32, disc_weight=0.0, learning_rate=2e-3)
    torch.manual_seed(0)
    stage = VAEStage(tiny_config(), config)
    batch = _sampler(config).batch(0)
    losses = fixed_batch_losses(stage, batch, config.steps, "rec", noise_seed=1)
    assert losses[-1] < 0.8 * losses[0]


def test_input_kl_and_discriminator_shapes() -> None:
    mel = vae_input(torch.zeros(2, 20800), downsample_factor=4)
    assert mel.shape == (2, 1, 128, 64)
    assert kl_divergence(torch.zeros(2, 8, 4, 4), torch.zeros(2, 8, 4, 4)).item() == 0.0
    assert PatchDiscriminator(8, 2)(torch.zeros(1, 1, 64, 64)).shape[:2] == (1, 1)
    with pytest.raises(ValueError, match="mel frames"):
        vae_input(torch.zeros(1, 500), downsample_factor=4)


def test_bad_config_and_init() -> None:
    with pytest.raises(ValueError, match="kl_weight"):
        replace(PRESETS["tiny"], kl_weight=-1.0)
    with pytest.raises(ValueError, match="vae"):
        VAEStage(tiny_config(), PRESETS["tiny"], init={"vae.quant_conv.weight": torch.zeros(1)})
