"""The LDM stage: cached frozen-part windows, the joint acoustic-encoder + UNet step, the EMA
codebook with dead-code restarts, condition dropout and the latent scale."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from semanticodec.model import SemantiCodecModel
from semanticodec.train.data import Clip, CropSampler
from semanticodec.train.ldm import PRESETS, CachedWindows, LDMStage, encode_windows, load_windows, save_windows
from synthetic import fixed_batch_losses
from tiny import tiny_config


@pytest.fixture(scope="module")
def windows():
    config = tiny_config()
    torch.manual_seed(0)
    model = SemantiCodecModel(config, torch.randn(config.semantic_vocab_size, config.feature_dim), with_vae_encoder=True).eval()
    rng = np.random.default_rng(0)
    t = np.arange(400_000) / 16000
    audio = [(0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), (0.1 * rng.standard_normal(40_000)).astype(np.float32)]
    clips = [Clip(Path("tone.wav"), "music"), Clip(Path("noise.wav"), "sound")]
    sampler = CropSampler(clips, 163840, 2, domain_weights={"music": 0.5, "sound": 0.5}, audio=audio)
    return model, encode_windows(model, sampler, 4, progress=False)


def test_encode_windows_shapes_and_padding(windows, tmp_path):
    model, cached = windows
    assert cached.features.shape == (4, 512, model.config.feature_dim) and cached.features.dtype == torch.float16
    assert cached.semantic_ids.shape == (4, 512) and int(cached.semantic_ids.max()) < 100
    assert cached.mean.shape == cached.logvar.shape == (4, 8, 256, 16)
    lengths = sorted(cached.valid.tolist())
    assert lengths[-1] == 512 and 0 < lengths[0] < 512  # the 2.5 s noise clip is padded
    save_windows(cached, tmp_path / "w.pt")
    again = load_windows(tmp_path / "w.pt")
    assert torch.equal(again.mean, cached.mean) and torch.equal(again.valid, cached.valid)


def _stage(model, **changes) -> LDMStage:
    config = replace(PRESETS["tiny"], **changes)
    return LDMStage(model.config, config, codebook=model.semantic.codebook)


def test_first_step_sets_the_latent_scale(windows):
    model, cached = windows
    stage = _stage(model)
    stage.train_step(CachedWindows(cached, 2).batch(0), 0)
    scale = float(stage.schedule.scale_factor)
    assert scale != 1.0 and 0.0 < scale < 100.0
    assert torch.equal(stage.export()["schedule.scale_factor"], stage.schedule.scale_factor)


def test_steps_on_a_fixed_batch_reduce_the_loss(windows):
    model, cached = windows
    stage = _stage(model, learning_rate=3e-3, warmup_steps=1, uncond_prob=0.0)
    batch = CachedWindows(cached, 2).batch(0)
    losses = fixed_batch_losses(stage, batch, 12, "v_mse", noise_seed=0)
    assert losses[-1] < 0.96 * losses[0] and min(losses[6:]) < min(losses[:3]), losses


def test_dead_codes_restart_and_codebook_follows_the_encoder(windows):
    model, cached = windows
    stage = _stage(model, dead_code_steps=1)
    before = stage.model.acoustic.codebook.clone()
    logs = [stage.train_step(CachedWindows(cached, 2).batch(s), s) for s in range(3)]
    after = stage.model.acoustic.codebook
    assert not torch.equal(before, after)
    assert all(1.0 <= log["code_perplexity"] <= 64 for log in logs)
    used = torch.unique(stage._last_ids)
    assert torch.isfinite(after).all() and len(used) > 1


def test_condition_dropout_uses_the_unconditional_context(windows, monkeypatch):
    model, cached = windows
    stage = _stage(model, uncond_prob=1.0)
    seen = []
    unet = stage.model.unet
    original = unet.forward

    def spy(x, t, context):
        seen.append(context.detach().clone())
        return original(x, t, context)

    monkeypatch.setattr(unet, "forward", spy)
    stage.train_step(CachedWindows(cached, 2).batch(0), 0)
    dim = 2 * model.config.feature_dim
    assert torch.count_nonzero(seen[0][..., :dim]) == 0
