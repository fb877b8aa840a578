"""The LDM stage: cached frozen-part windows, the joint acoustic-encoder + UNet step, the acoustic
codebook (k-means initialisation, EMA, dead-code restarts, factorised codes), condition
dropout (whole condition and acoustic stream alone), the learning-rate schedule, the weight
average (EMA), exact resumption and the compact checkpoint."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from semanticodec.model import SemantiCodecModel
from semanticodec.train.data import Clip, CropSampler
from semanticodec.train.ldm import (
    PRESETS,
    CachedWindows,
    LDMStage,
    LDMTrainConfig,
    code_perplexity,
    encode_windows,
    load_windows,
    save_windows,
)
from semanticodec.train.loop import compact_checkpoint, load_checkpoint, train, warmup_cosine
from synthetic import assert_resume_is_exact, fixed_batch_losses
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


def _stage(model, model_config=None, windows=None, **changes) -> LDMStage:
    config = replace(PRESETS["tiny"], **changes)
    return LDMStage(model_config or model.config, config, codebook=model.semantic.codebook, windows=windows)


def _factorised(config, code_dim: int = 8):
    return replace(config, acoustic=replace(config.acoustic, code_dim=code_dim))


def test_first_step_sets_the_latent_scale(windows):
    model, cached = windows
    stage = _stage(model)
    stage.train_step(CachedWindows(cached, 2).batch(0), 0)
    scale = float(stage.schedule.scale_factor)
    assert scale != 1.0 and 0.0 < scale < 100.0
    assert torch.equal(stage.export()["schedule.scale_factor"], stage.schedule.scale_factor)


def test_steps_on_a_fixed_batch_reduce_the_loss(windows):
    model, cached = windows
    stage = _stage(model, steps=100, learning_rate=3e-3, warmup_steps=1, uncond_prob=0.0)  # lr near 3e-3 throughout
    batch = CachedWindows(cached, 2).batch(0)
    losses = fixed_batch_losses(stage, batch, 12, "v_mse", noise_seed=0)
    assert losses[-1] < 0.96 * losses[0] and min(losses[6:]) < min(losses[:3]), losses


def _code_space(stage: LDMStage, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Code-space vectors ``[M, d]`` of the batch's valid rows under the stage's current encoder."""
    acoustic = stage.model.acoustic
    with torch.no_grad():
        centroids = stage.model.semantic.lookup(batch.semantic_ids)
        vectors = acoustic.code_space(acoustic.project(acoustic.lstm_input(batch.features.float(), centroids, batch.valid)))
    rows = torch.arange(vectors.shape[1]) < batch.valid[:, None]
    return vectors[rows], rows


@pytest.mark.parametrize("factorised", [False, True])
def test_codebook_is_kmeans_initialised_on_the_cached_windows(windows, factorised):
    model, cached = windows
    config = _factorised(model.config) if factorised else model.config
    stage = _stage(model, config, windows=cached, init_windows=4, init_iterations=8)
    stage._initialise_codebook(CachedWindows(cached, 2).batch(0))
    vectors, _ = _code_space(stage, cached)  # the init windows
    codes = stage.model.acoustic.codes
    if factorised:
        assert torch.allclose(codes.norm(dim=1), torch.ones(len(codes)), atol=1e-5)
    assert torch.allclose(stage.stats.embed_sum, codes) and bool(stage.stats.initialised)
    rows = torch.randperm(len(vectors), generator=torch.Generator().manual_seed(0))[: len(codes)]

    def error(book: torch.Tensor) -> float:
        return float(torch.cdist(vectors, book).min(dim=1).values.pow(2).mean())

    # k-means codes quantise the init vectors better than random rows of them, and use every code
    assert error(codes) < 0.8 * error(vectors[rows]), (error(codes), error(vectors[rows]))
    assert len(torch.unique(torch.cdist(vectors, codes).argmin(dim=1))) > 0.9 * len(codes)


def test_a_dead_code_is_restarted_on_a_batch_vector(windows):
    model, cached = windows
    stage = _stage(model, dead_code_steps=3)
    sampler = CachedWindows(cached, 2)
    stage.train_step(sampler.batch(0), 0)
    dead = 5
    far = torch.full((model.config.feature_dim,), 1e4)
    stage.model.acoustic.quantizer._codebook.embed[0, dead] = far
    stage.stats.embed_sum[dead] = far
    stage.stats.last_used[dead] = 0
    stage.train_step(sampler.batch(1), 1)
    stage.train_step(sampler.batch(2), 2)
    assert torch.equal(stage.model.acoustic.codes[dead], far)  # unused for 2 < 3 steps: kept
    batch = sampler.batch(3)
    vectors, _ = _code_space(stage, batch)
    log = stage.train_step(batch, 3)
    code = stage.model.acoustic.codes[dead]
    assert log["code_restarts"] >= 1 and int(stage.stats.last_used[dead]) == 3
    # restarted on one of this step's vectors (+ 1e-3 noise), far from where it was
    assert float(torch.cdist(code[None], vectors).min()) < 0.05 and float(code.abs().max()) < 1e3


def test_codes_used_and_perplexity_count_the_valid_rows(windows):
    model, cached = windows
    stage = _stage(model)
    batch = cached
    log = stage.train_step(batch, 0)
    _, rows = _code_space(stage, batch)
    ids = stage._last_ids[rows]
    assert rows.sum() < rows.numel()  # the batch holds a padded window
    assert log["codes_used"] == len(torch.unique(ids))
    assert 1.0 <= log["code_perplexity"] <= log["codes_used"]
    assert code_perplexity(torch.tensor([0, 1, 2, 3] * 5), 64) == pytest.approx(4.0)
    assert code_perplexity(torch.tensor([7] * 9), 64) == pytest.approx(1.0)
    assert code_perplexity(torch.tensor([0, 0, 0, 1]), 4) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))


def _spy_contexts(stage, monkeypatch) -> list[torch.Tensor]:
    seen = []
    unet = stage.model.unet
    original = unet.forward

    def spy(x, t, context):
        seen.append(context.detach().clone())
        return original(x, t, context)

    monkeypatch.setattr(unet, "forward", spy)
    return seen


def test_condition_dropout_uses_the_unconditional_context(windows, monkeypatch):
    model, cached = windows
    stage = _stage(model, uncond_prob=1.0, acoustic_drop_prob=0.0)
    seen = _spy_contexts(stage, monkeypatch)
    stage.train_step(CachedWindows(cached, 2).batch(0), 0)
    dim = 2 * model.config.feature_dim
    assert torch.count_nonzero(seen[0][..., :dim]) == 0


@pytest.mark.parametrize("semantic_only", [False, True])
def test_acoustic_dropout_zeroes_the_acoustic_stream_alone(windows, monkeypatch, semantic_only):
    model, cached = windows
    config = replace(model.config, semantic_only_decoding=semantic_only)
    stage = _stage(model, config, uncond_prob=0.0, acoustic_drop_prob=1.0)
    seen = _spy_contexts(stage, monkeypatch)
    batch = CachedWindows(cached, 2).batch(0)
    stage.train_step(batch, 0)
    d = model.config.feature_dim
    rows = torch.arange(512) < batch.valid[:, None]
    acoustic, semantic = seen[0][..., :d], seen[0][..., d : 2 * d]
    assert torch.equal(semantic[rows], model.semantic.lookup(batch.semantic_ids)[rows])
    assert bool((seen[0][..., : 2 * d][~rows] == -1).all())  # padding stays marked
    if semantic_only:
        assert torch.count_nonzero(acoustic[rows]) == 0
    else:  # a model without semantic-only decoding never drops its acoustic stream
        assert torch.count_nonzero(acoustic[rows]) == acoustic[rows].numel()


def test_semantic_only_model_needs_acoustic_dropout(windows):
    model, _ = windows
    with pytest.raises(ValueError, match="acoustic_drop_prob"):
        _stage(model, replace(model.config, semantic_only_decoding=True), acoustic_drop_prob=0.0)
    with pytest.raises(ValueError, match="sum <= 1"):
        replace(PRESETS["tiny"], uncond_prob=0.6, acoustic_drop_prob=0.6)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = replace(PRESETS["tiny"], steps=1000, learning_rate=1e-3, warmup_steps=100, min_lr_ratio=0.1)
    assert config.learning_rate_at(0) == pytest.approx(1e-5)
    assert config.learning_rate_at(99) == pytest.approx(1e-3)
    assert config.learning_rate_at(550) == pytest.approx(0.55e-3)
    assert config.learning_rate_at(1000) == pytest.approx(1e-4)
    assert config.learning_rate_at(5000) == pytest.approx(1e-4)
    rates = [config.learning_rate_at(s) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    longer = replace(config, steps=5000, decay_steps=1000)
    assert longer.learning_rate_at(700) == config.learning_rate_at(700)
    assert warmup_cosine(10, 1.0, 0, 20) == pytest.approx(0.5)


def test_weight_average_follows_the_decay_and_is_exported(windows):
    model, cached = windows
    stage = _stage(model, ema_decay=0.9)
    sampler = CachedWindows(cached, 2)
    name = "unet.out.2.weight"
    expected = dict(stage.model.named_parameters())[name].detach().clone()
    for step in range(4):
        stage.train_step(sampler.batch(step), step)
        decay = min(0.9, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * dict(stage.model.named_parameters())[name].detach()
    exported = stage.export()
    assert torch.allclose(exported[name], expected, atol=1e-6)
    assert not torch.allclose(exported[name], dict(stage.model.named_parameters())[name])
    averaged = {f"acoustic.{k}": v for k, v in stage.averaged.acoustic.state_dict().items()}
    averaged.update({f"unet.{k}": v for k, v in stage.averaged.unet.state_dict().items()})
    assert set(exported) == set(averaged) | {k for k in exported if k.startswith("schedule.")}
    assert all(torch.equal(exported[k], v) for k, v in averaged.items())
    # the codebook is a buffer: the live one
    key = "acoustic.quantizer._codebook.embed"
    assert torch.equal(exported[key], stage.model.acoustic.quantizer._codebook.embed)
    model_keys = {k for k in stage.model.state_dict() if k.startswith(("acoustic.", "unet.", "schedule."))}
    assert set(exported) == model_keys


@pytest.mark.parametrize("factorised", [False, True])
def test_resumed_run_equals_an_uninterrupted_one(windows, tmp_path, factorised):
    model, cached = windows
    model_config = _factorised(model.config) if factorised else model.config
    config = replace(PRESETS["tiny"], steps=4, checkpoint_every=2, dead_code_steps=2, warmup_steps=2, ema_decay=0.9)

    def stage() -> LDMStage:
        torch.manual_seed(0)  # the same initial weights for both runs
        return LDMStage(model_config, config, codebook=model.semantic.codebook, windows=cached)

    assert_resume_is_exact(stage, CachedWindows(cached, 2), config, tmp_path)


def test_compact_checkpoint_resumes_close_to_the_full_one(windows, tmp_path):
    model, cached = windows
    config = replace(PRESETS["tiny"], steps=3, checkpoint_every=3, ema_decay=0.9)
    torch.manual_seed(0)
    stage = LDMStage(model.config, config, codebook=model.semantic.codebook, windows=cached)
    train(stage, CachedWindows(cached, 2), config, tmp_path / "run", progress=False)
    full = tmp_path / "run" / "checkpoint.pt"
    compact = tmp_path / "compact.pt"
    compact_checkpoint(full, compact)
    assert compact.stat().st_size < 0.45 * full.stat().st_size, (compact.stat().st_size, full.stat().st_size)
    with pytest.raises(ValueError, match="already a compact checkpoint"):
        compact_checkpoint(compact, tmp_path / "again.pt")

    resumed = LDMStage(model.config, config, codebook=model.semantic.codebook, windows=cached)
    assert load_checkpoint(resumed, compact) == 3
    for name, module in stage.modules().items():
        own = module.state_dict()
        for key, value in resumed.modules()[name].state_dict().items():
            assert value.dtype == own[key].dtype
            if value.is_floating_point():
                assert torch.allclose(value, own[key], rtol=1e-3, atol=1e-4), (name, key)
            else:
                assert torch.equal(value, own[key]), (name, key)
    assert resumed.schedule.scale_factor == stage.schedule.scale_factor  # small tensors stay float32
    moments = [(stage.optimizer.state[p], resumed.optimizer.state[q]) for p, q in zip(stage.trained.parameters(), resumed.trained.parameters())]
    for original, restored in moments:
        assert torch.equal(original["step"], restored["step"]) and not restored["exp_avg"].any()
        v, w = original["exp_avg_sq"], restored["exp_avg_sq"]
        assert torch.equal(v == 0, w == 0) and w.dtype == v.dtype
        spread = float(v[v > 0].log2().max() - v[v > 0].log2().min())
        ratio = (w[v > 0] / v[v > 0]).log2().abs()
        assert float(ratio.max()) <= spread / 254 / 2 + 1e-6  # half a quantisation level
    log = resumed.train_step(CachedWindows(cached, 2).batch(3), 3)
    assert all(math.isfinite(v) for v in log.values())


def test_presets_are_valid():
    small = PRESETS["small"]
    assert small.windows >= 2000 and small.ema_decay == 0.999 and small.acoustic_drop_prob == 0.1
    assert small.learning_rate_at(small.steps) == pytest.approx(small.min_lr_ratio * small.learning_rate)
    with pytest.raises(ValueError):
        LDMTrainConfig(steps=1, batch_size=1, crop_seconds=10.24, learning_rate=1e-3, ema_decay=1.0)
