"""Vocoder training stage: discriminators and GAN losses, train/resume/export with the tiny
model, fine-tuning init, overfitting a fixed batch, configuration errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from semanticodec.features import mel64
from semanticodec.model import SemantiCodecModel
from semanticodec.nn.discriminators import (
    DiscriminatorConfig,
    HiFiGANDiscriminator,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from semanticodec.train.data import Batch, Clip, CropSampler
from semanticodec.train.loop import train
from semanticodec.train.vocoder import PRESETS, VocoderStage, VocoderTrainConfig, _masked_l1
from synthetic import log_rows
from tiny import tiny_config

TINY = PRESETS["tiny"]


def _sampler(config: VocoderTrainConfig) -> CropSampler:
    """A 1 s chirp-like tone and a 0.1 s noise burst (shorter than the crop: padded)."""
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype(np.float32)
    noise = (0.1 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32)
    clips = [Clip(Path("x.wav"), "speech"), Clip(Path("y.wav"), "sound")]
    return CropSampler(clips, config.crop_samples, config.batch_size, seed=1, audio=[tone, noise])




def test_train_resume_and_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    stage = VocoderStage(tiny_config(), TINY)
    sampler = _sampler(TINY)
    exported = train(stage, sampler, TINY, tmp_path, progress=False)
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == ["step", "seconds", "mel", "gen_adv", "fm", "disc"]
    assert float(rows[0]["disc"]) == 0.0 and float(rows[1]["disc"]) > 0 and float(rows[2]["fm"]) > 0
    assert all(np.isfinite(float(v)) for r in rows for v in r.values())
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3

    longer = replace(TINY, steps=4)
    resumed = VocoderStage(tiny_config(), longer)
    train(resumed, sampler, longer, tmp_path, progress=False)
    assert [r["step"] for r in log_rows(tmp_path)] == ["1", "2", "3", "4"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 4

    weights = load_file(str(exported))
    model = SemantiCodecModel(tiny_config(), with_vae_encoder=True)
    assert set(weights) == {k for k in model.state_dict() if k.startswith("vocoder.")}
    model.load_weights(weights, prefixes=("vocoder.",))
    mel = mel64(torch.from_numpy(sampler.batch(0).audio.numpy()), framing="audioldm_train")
    with torch.no_grad():
        expected = resumed.generator(mel)
        assert torch.allclose(model.vocoder(mel), expected, atol=1e-5)
    assert any("parametrizations" in k for k in resumed.generator.state_dict())


def test_init_fine_tunes_from_exported_weights() -> None:
    torch.manual_seed(1)
    exported = VocoderStage(tiny_config(), TINY).export()
    stage = VocoderStage(tiny_config(), TINY, init=exported)
    again = stage.export()
    assert set(again) == set(exported)
    assert all(torch.allclose(again[k], exported[k], atol=1e-6) for k in exported)
    with pytest.raises(ValueError, match="missing"):
        VocoderStage(tiny_config(), TINY, init={k: v for k, v in exported.items() if "conv_post" not in k})


def test_overfits_a_fixed_batch() -> None:
    torch.manual_seed(0)
    config = replace(TINY, steps=10, learning_rate=5e-3, mel_only_steps=10)
    stage = VocoderStage(tiny_config(), config)
    batch = _sampler(config).batch(0)
    losses = [stage.train_step(batch, step)["mel"] for step in range(config.steps)]
    assert losses[-1] < 0.85 * losses[0]
    adversarial = stage.train_step(batch, config.mel_only_steps)
    assert adversarial["disc"] > 0 and adversarial["gen_adv"] > 0


def test_padding_is_masked() -> None:
    """Short clips train with finite losses; the mel L1 ignores frames after ``length``."""
    torch.manual_seed(0)
    stage = VocoderStage(tiny_config(), replace(TINY, mel_only_steps=0))
    audio = 0.1 * torch.randn(2, TINY.crop_samples)
    audio[1, 1000:] = 0
    losses = stage.train_step(Batch(audio, torch.tensor([TINY.crop_samples, 1000])), 0)
    assert all(np.isfinite(v) for v in losses.values())
    target = torch.randn(2, 64, 10)
    prediction = target.clone()
    prediction[1, :, 7:] += 5.0
    mask = torch.arange(10) < torch.tensor([[10], [7]])
    assert _masked_l1(prediction, target, mask).item() == 0.0
    assert _masked_l1(prediction, target, torch.ones(2, 10, dtype=torch.bool)).item() > 0


@pytest.mark.parametrize("length", [2048, 2051, 977])
def test_discriminator_shapes(length: int) -> None:
    config = DiscriminatorConfig(width=0.0625)
    disc = HiFiGANDiscriminator(config)
    judged = disc(torch.randn(3, 1, length))
    assert len(judged) == len(config.periods) + config.scales
    for logits, features in judged:
        assert logits.ndim == 2 and logits.shape[0] == 3
        assert all(f.shape[0] == 3 for f in features)
    assert [len(f) for _, f in judged] == [6] * 5 + [8] * 3


def test_width_scales_channels() -> None:
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(MultiPeriodDiscriminator(width=0.125)) < count(MultiPeriodDiscriminator()) / 30
    assert count(MultiScaleDiscriminator(width=0.125)) < count(MultiScaleDiscriminator()) / 30
    full = MultiScaleDiscriminator(scales=1)
    assert full.discriminators[0].convs[0].parametrizations.weight.original.shape == (128, 1, 15)


def test_losses() -> None:
    ones, zeros = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    assert discriminator_loss(ones, zeros).item() == 0.0
    assert discriminator_loss(zeros, ones).item() == 2.0
    assert generator_adversarial_loss(ones).item() == 0.0
    assert generator_adversarial_loss(zeros + zeros).item() == 2.0
    real, fake = [[torch.zeros(2, 3), torch.ones(2, 4)]], [[torch.ones(2, 3), torch.ones(2, 4)]]
    assert feature_matching_loss(real, fake).item() == 1.0
    with pytest.raises(ValueError, match="equally many"):
        discriminator_loss(ones, zeros + zeros)
    with pytest.raises(ValueError, match="waveform"):
        HiFiGANDiscriminator(DiscriminatorConfig(width=0.0625))(torch.randn(2, 100))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"crop_seconds": 0.01}, "crop_seconds"),
        ({"mel_only_steps": -1}, "mel_only_steps"),
        ({"lr_decay": 0.0}, "lr_decay"),
        ({"betas": (0.8, 1.0)}, "betas"),
        ({"lambda_mel": -1.0}, "lambda_mel"),
    ],
)
def test_config_errors(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TINY, **changes)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"periods": ()}, "periods"), ({"periods": (2, 2)}, "distinct"), ({"scales": 0}, "scales"), ({"width": 0.0}, "width")],
)
def test_discriminator_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DiscriminatorConfig(**kwargs)


def test_presets() -> None:
    assert set(PRESETS) == {"official", "small", "tiny"}
    assert TINY.steps <= 3 and TINY.batch_size == 2
    official = PRESETS["official"]
    assert (official.learning_rate, official.betas, official.lambda_mel, official.lambda_fm) == (2e-4, (0.8, 0.99), 45.0, 2.0)
    assert official.crop_samples == 8192
