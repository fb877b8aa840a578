"""Vocoder training stage: discriminators and GAN losses, train/resume/export with the tiny
model, fine-tuning init, overfitting a fixed batch, configuration errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from semanticodec.config import ModelConfig
from semanticodec.features import mel64
from semanticodec.model import SemantiCodecModel
from semanticodec.nn.discriminators import (
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleDiscriminator,
    VocoderDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from semanticodec.nn.vocos import Vocos, VocosConfig
from semanticodec.train.data import Batch, Clip, CropSampler
from semanticodec.train.loop import train
from semanticodec.train.vocoder import PRESETS, VocoderStage, VocoderTrainConfig, _masked_l1, multi_resolution_stft_loss
from synthetic import assert_resume_is_exact, log_rows
from tiny import tiny_config

TINY = PRESETS["tiny"]
TINY_VOCOS = VocosConfig(dim=32, intermediate_dim=64, num_layers=2)


def model_config(vocoder: str) -> ModelConfig:
    """The tiny model with its HiFi-GAN or with a tiny Vocos."""
    config = tiny_config()
    return config if vocoder == "hifigan" else replace(config, vocoder=TINY_VOCOS)


VOCODERS = pytest.mark.parametrize("vocoder", ["hifigan", "vocos"])


def _sampler(config: VocoderTrainConfig) -> CropSampler:
    """A 1 s chirp-like tone and a 0.1 s noise burst (shorter than the crop: padded)."""
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype(np.float32)
    noise = (0.1 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32)
    clips = [Clip(Path("x.wav"), "speech"), Clip(Path("y.wav"), "sound")]
    return CropSampler(clips, config.crop_samples, config.batch_size, seed=1, audio=[tone, noise])




@VOCODERS
def test_train_resume_and_export(tmp_path: Path, vocoder: str) -> None:
    torch.manual_seed(0)
    stage = VocoderStage(model_config(vocoder), TINY)
    sampler = _sampler(TINY)
    exported = train(stage, sampler, TINY, tmp_path, progress=False)
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == ["step", "seconds", "mel", "stft", "gen_adv", "fm", "disc"]
    assert float(rows[0]["stft"]) > 0
    assert float(rows[0]["disc"]) == 0.0 and float(rows[1]["disc"]) > 0 and float(rows[2]["fm"]) > 0
    assert all(np.isfinite(float(v)) for r in rows for v in r.values())
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3

    longer = replace(TINY, steps=4)
    resumed = VocoderStage(model_config(vocoder), longer)
    train(resumed, sampler, longer, tmp_path, progress=False)
    assert [r["step"] for r in log_rows(tmp_path)] == ["1", "2", "3", "4"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 4

    weights = load_file(str(exported))
    model = SemantiCodecModel(model_config(vocoder), with_vae_encoder=True)
    assert set(weights) == {k for k in model.state_dict() if k.startswith("vocoder.")}
    model.load_weights(weights, prefixes=("vocoder.",))
    mel = mel64(torch.from_numpy(sampler.batch(0).audio.numpy()), framing="audioldm_train")
    with torch.no_grad():
        expected = resumed.generator(mel)
        assert torch.allclose(model.vocoder(mel), expected, atol=1e-5)
    assert any("parametrizations" in k for k in resumed.generator.state_dict()) == (vocoder == "hifigan")
    assert isinstance(model.vocoder, Vocos) == (vocoder == "vocos")


@VOCODERS
def test_resumed_run_equals_an_uninterrupted_one(tmp_path: Path, vocoder: str) -> None:
    """Adversarial from step 1 on, the learning rate decaying every step: generator and
    discriminator states and the schedule carry over."""
    config = replace(TINY, steps=4, checkpoint_every=2, lr_decay=0.9, lr_decay_every=1)
    assert config.mel_only_steps < config.checkpoint_every

    def stage() -> VocoderStage:
        torch.manual_seed(0)
        return VocoderStage(model_config(vocoder), config)

    assert_resume_is_exact(stage, _sampler(config), config, tmp_path)


@VOCODERS
def test_init_fine_tunes_from_exported_weights(vocoder: str) -> None:
    torch.manual_seed(1)
    exported = VocoderStage(model_config(vocoder), TINY).export()
    stage = VocoderStage(model_config(vocoder), TINY, init=exported)
    again = stage.export()
    assert set(again) == set(exported)
    assert all(torch.allclose(again[k], exported[k], atol=1e-6) for k in exported)
    with pytest.raises(ValueError, match="missing"):
        VocoderStage(model_config(vocoder), TINY, init={k: v for k, v in exported.items() if "blocks.1" not in k and "conv_post" not in k})


@pytest.mark.parametrize("vocoder, lambda_stft", [("hifigan", 0.0), ("vocos", 0.0), ("vocos", 1.0)])
def test_overfits_a_fixed_batch(vocoder: str, lambda_stft: float) -> None:
    torch.manual_seed(0)
    config = replace(TINY, steps=20, learning_rate=5e-3, mel_only_steps=20, lambda_stft=lambda_stft)
    stage = VocoderStage(model_config(vocoder), config)
    batch = _sampler(config).batch(0)
    losses = [stage.train_step(batch, step)["mel"] for step in range(config.steps)]
    assert losses[-1] < 0.85 * losses[0], losses
    adversarial = stage.train_step(batch, config.mel_only_steps)
    assert adversarial["disc"] > 0 and adversarial["gen_adv"] > 0


def test_adversarial_steps_use_their_own_batch(monkeypatch) -> None:
    """The adversarial steps see only ``adversarial_batch_size`` crops of ``adversarial_crop_seconds``."""
    config = replace(TINY, crop_seconds=0.256, mel_only_steps=1, adversarial_batch_size=1, adversarial_crop_seconds=0.128)
    stage = VocoderStage(tiny_config(), config)
    seen = []
    forward = stage.discriminator.forward
    monkeypatch.setattr(stage.discriminator, "forward", lambda x: seen.append(tuple(x.shape)) or forward(x))
    batch = Batch(0.1 * torch.randn(2, config.crop_samples), torch.tensor([config.crop_samples, 1000]))
    stage.train_step(batch, 0)
    assert seen == []
    stage.train_step(batch, 1)
    # real + fake of one crop of 0.128 s (12 whole mel frames = 1920 samples), for D then for G
    assert seen == [(2, 1, 1920), (2, 1, 1920)]


@VOCODERS
def test_padding_is_masked(vocoder: str) -> None:
    """Short clips train with finite losses; the mel L1 ignores frames after ``length``."""
    torch.manual_seed(0)
    stage = VocoderStage(model_config(vocoder), replace(TINY, mel_only_steps=0))
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
    config = DiscriminatorConfig(width=0.0625, resolutions=((256, 64), (128, 32)))
    disc = VocoderDiscriminator(config)
    judged = disc(torch.randn(3, 1, length))
    assert len(judged) == len(config.periods) + config.scales + len(config.resolutions)
    for logits, features in judged:
        assert logits.ndim == 2 and logits.shape[0] == 3
        assert all(f.shape[0] == 3 for f in features)
    assert [len(f) for _, f in judged] == [6] * 5 + [8] * 3 + [6] * 2
    # the MRD sees the complex STFT: [B, C, frames, bins], bins halved by each strided layer
    first = judged[-2][1][0]
    assert first.shape[2:] == (1 + length // 64, 129)
    assert judged[-2][1][3].shape[3] == 17


def test_mrd_sees_phase() -> None:
    """A phase change that keeps every STFT magnitude of the MRD's resolution moves its logits."""
    torch.manual_seed(0)
    mrd = MultiResolutionDiscriminator(((128, 32),), width=0.25)
    x = torch.randn(1, 1, 4096)
    flipped = -x  # same magnitudes at every resolution, every phase shifted by pi
    (a, _), = mrd(x)
    (b, _), = mrd(flipped)
    assert not torch.allclose(a, b, atol=1e-4)


def test_multi_resolution_stft_loss() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4000)
    resolutions = ((256, 64), (512, 128))
    assert multi_resolution_stft_loss(x, x.clone(), resolutions).item() == 0.0
    near = multi_resolution_stft_loss(x + 0.01 * torch.randn_like(x), x, resolutions)
    far = multi_resolution_stft_loss(x + 0.5 * torch.randn_like(x), x, resolutions)
    assert 0 < near < far
    # phase-blind: a sign flip keeps every magnitude
    assert multi_resolution_stft_loss(-x, x, resolutions).item() == pytest.approx(0.0, abs=1e-6)


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
        VocoderDiscriminator(DiscriminatorConfig(width=0.0625))(torch.randn(2, 100))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"crop_seconds": 0.01}, "crop_seconds"),
        ({"mel_only_steps": -1}, "mel_only_steps"),
        ({"lr_decay": 0.0}, "lr_decay"),
        ({"betas": (0.8, 1.0)}, "betas"),
        ({"lambda_mel": -1.0}, "lambda_mel"),
        ({"lambda_stft": -1.0}, "lambda_stft"),
        ({"adversarial_batch_size": 3}, "adversarial_batch_size"),
        ({"adversarial_crop_seconds": 0.5}, "adversarial_crop_seconds"),
        ({"stft_resolutions": ()}, "stft_resolutions"),
    ],
)
def test_config_errors(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TINY, **changes)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"periods": ()}, "periods"), ({"periods": (2, 2)}, "distinct"), ({"scales": 0}, "scales"),
        ({"width": 0.0}, "width"), ({"resolutions": ((100, 200),)}, "resolutions"),
    ],
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
