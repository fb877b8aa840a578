"""AudioMAE pre-training stage: train/resume/export with the tiny model, overfitting, API."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from semanticodec.model import SemantiCodecModel
from semanticodec.nn.vit import mae_decoder_keys
from semanticodec.train.data import Batch, CropSampler
from semanticodec.train.loop import train
from semanticodec.train.mae import PRESETS, MAEDecoder, MAEStage, patchify
from synthetic import assert_resume_is_exact, fixed_batch_losses, log_rows, tone_and_noise_sampler
from tiny import tiny_config


def _sampler(config) -> CropSampler:
    return tone_and_noise_sampler(config.crop_samples, config.batch_size, 12, 11)




def test_train_resume_and_export(tmp_path: Path) -> None:
    config = PRESETS["tiny"]
    assert config.steps <= 3 and config.batch_size == 2
    sampler = _sampler(config)
    torch.manual_seed(0)
    train(MAEStage(tiny_config(), replace(config, steps=2)), sampler, replace(config, steps=2), tmp_path, progress=False)
    assert [r["step"] for r in log_rows(tmp_path)] == ["1", "2"]
    stage = MAEStage(tiny_config(), config)
    exported = train(stage, sampler, config, tmp_path, progress=False)
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3
    weights = load_file(exported)
    assert all(k.startswith("audiomae.") for k in weights)
    model = SemantiCodecModel(tiny_config(), with_vae_encoder=True)
    model.load_weights(weights, prefixes=("audiomae.",))
    fine_tune = MAEStage(tiny_config(), config, init=weights)
    assert torch.equal(fine_tune.export()["audiomae.cls_token"], weights["audiomae.cls_token"])


def test_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    config = replace(PRESETS["tiny"], steps=4, checkpoint_every=2, warmup_steps=2)

    def stage() -> MAEStage:
        torch.manual_seed(0)
        return MAEStage(tiny_config(), config)

    assert_resume_is_exact(stage, _sampler(config), config, tmp_path)


def test_overfits_a_fixed_batch() -> None:
    config = replace(PRESETS["tiny"], steps=12, learning_rate=3e-3, warmup_steps=0)
    torch.manual_seed(0)
    stage = MAEStage(tiny_config(), config)
    batch = _sampler(config).batch(0)
    losses = fixed_batch_losses(stage, batch, config.steps, "loss", noise_seed=1)
    assert losses[-1] < 0.9 * losses[0]


def test_decoder_keys_are_official() -> None:
    decoder = MAEDecoder(tiny_config().audiomae, dim=16, depth=2, heads=2)
    assert set(decoder.state_dict()) == set(mae_decoder_keys(2))


def test_patchify_is_time_major() -> None:
    fbank = torch.arange(32 * 48, dtype=torch.float32).view(1, 32, 48)
    patches = patchify(fbank, 16)
    assert patches.shape == (1, 6, 256)
    assert torch.equal(patches[0, 1], fbank[0, :16, 16:32].reshape(-1))
    assert torch.equal(patches[0, 3], fbank[0, 16:, :16].reshape(-1))


def test_schedule_and_bad_config() -> None:
    config = replace(PRESETS["tiny"], steps=10, warmup_steps=2, learning_rate=1.0)
    assert config.learning_rate_at(0) == pytest.approx(0.5)
    assert config.learning_rate_at(2) == pytest.approx(1.0)
    assert config.learning_rate_at(9) < 0.05
    with pytest.raises(ValueError, match="mask_ratio"):
        replace(config, mask_ratio=1.0)
    with pytest.raises(ValueError, match="decoder_heads"):
        replace(config, decoder_dim=20, decoder_heads=3)
    with pytest.raises(ValueError, match="audiomae"):
        MAEStage(tiny_config(), config, init={"audiomae.cls_token": torch.zeros(1, 1, 32)})


def test_batch_shapes_match_the_codec_window() -> None:
    config = PRESETS["tiny"]
    assert config.crop_samples == 164080
    stage = MAEStage(tiny_config(), config)
    batch = Batch(torch.zeros(2, config.crop_samples), torch.full((2,), config.crop_samples))
    assert np.isfinite(stage.train_step(batch, 0)["loss"])
