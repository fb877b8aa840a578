"""Synthetic training audio, log reading and the interrupted-run comparison shared by the
training-stage tests."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from semanticodec.train.data import Clip, CropSampler
from semanticodec.train.loop import TrainConfig, train


def tone_and_noise_sampler(
    crop_samples: int, batch_size: int, tone_seconds: float, noise_seconds: float, domain_weights: dict | None = None
) -> CropSampler:
    """Crops of two clips at 16 kHz: a 440 Hz sine of amplitude 0.3 ("speech") and white noise
    of std 0.1 ("sound")."""
    t = np.arange(round(tone_seconds * 16000)) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = (0.1 * np.random.default_rng(0).standard_normal(round(noise_seconds * 16000))).astype(np.float32)
    clips = [Clip(Path("tone.wav"), "speech"), Clip(Path("noise.wav"), "sound")]
    return CropSampler(clips, crop_samples, batch_size, domain_weights=domain_weights, audio=[tone, noise])


def log_rows(folder: Path) -> list[dict[str, str]]:
    """Rows of ``folder/log.csv`` written by the training loop."""
    with (folder / "log.csv").open() as f:
        return list(csv.DictReader(f))


def fixed_batch_losses(stage, batch, steps: int, key: str, noise_seed: int) -> list[float]:
    """The ``key`` loss of ``steps`` training steps of ``stage`` on one batch, torch's RNG
    reseeded with ``noise_seed`` before each step (same masks / noise every step)."""
    losses = []
    for step in range(steps):
        torch.manual_seed(noise_seed)
        losses.append(stage.train_step(batch, step)[key])
    return losses


class Interrupted(Exception):
    """What :class:`Crashing` raises: the run stops there, as a killed process would."""


class Crashing:
    """A sampler that gives ``sampler``'s batches until step ``fail_at``, where it raises :class:`Interrupted`."""

    def __init__(self, sampler, fail_at: int) -> None:
        self.sampler, self.fail_at = sampler, fail_at

    def batch(self, step: int):
        if step == self.fail_at:
            raise Interrupted
        return self.sampler.batch(step)


def assert_resume_is_exact(make_stage: Callable[[], object], sampler, config: TrainConfig, root: Path) -> None:
    """Train ``make_stage()`` for ``config.steps`` steps uninterrupted in ``root/whole``, and in
    ``root/resumed`` crash it in step ``config.steps - 1`` (after a checkpoint at step
    ``config.checkpoint_every``) then resume it with a new stage; assert that both runs end with
    the same exported weights, checkpointed weights and optimizer states (moments, step counts,
    learning rates), and log the same losses. ``make_stage`` must seed the initial weights."""
    assert config.log_every == 1 and config.checkpoint_every < config.steps - 1 < 2 * config.checkpoint_every
    whole = train(make_stage(), sampler, config, root / "whole", progress=False)
    try:
        train(make_stage(), Crashing(sampler, config.steps - 1), config, root / "resumed", progress=False)
    except Interrupted:
        pass
    else:
        raise AssertionError("the run did not reach the crash")
    assert torch.load(root / "resumed" / "checkpoint.pt", weights_only=True)["step"] == config.checkpoint_every
    resumed = train(make_stage(), sampler, config, root / "resumed", progress=False)

    from safetensors.torch import load_file

    a, b = load_file(whole), load_file(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    first, second = (torch.load(root / run / "checkpoint.pt", weights_only=True) for run in ("whole", "resumed"))
    assert first["step"] == second["step"] == config.steps
    _assert_equal(first["modules"], second["modules"], "modules")
    _assert_equal(first["optimizers"], second["optimizers"], "optimizers")
    assert any(first["optimizers"][name]["state"] for name in first["optimizers"])  # moments were compared
    rows = [[row.split(",") for row in (root / run / "log.csv").read_text().splitlines()] for run in ("whole", "resumed")]
    whole_log, resumed_log = ([[r[0], *r[2:]] for r in log] for log in rows)  # wall seconds dropped
    # header, steps 1 .. steps-1, crash; the resumed run logs steps checkpoint_every+1 .. steps again
    done = config.checkpoint_every + 1
    assert resumed_log[: config.steps] == whole_log[: config.steps]
    assert resumed_log[config.steps :] == whole_log[done:], (whole_log, resumed_log)


def _assert_equal(first, second, where: str) -> None:
    """Nested state dicts (dicts, lists, tensors, numbers) are equal, tensors bit for bit."""
    if isinstance(first, torch.Tensor):
        assert isinstance(second, torch.Tensor) and first.dtype == second.dtype, where
        assert torch.equal(first, second), f"{where} differs by {float((first.double() - second.double()).abs().max())}"
    elif isinstance(first, dict):
        assert isinstance(second, dict) and first.keys() == second.keys(), (where, list(first), list(second))
        for key in first:
            _assert_equal(first[key], second[key], f"{where}.{key}")
    elif isinstance(first, (list, tuple)):
        assert isinstance(second, (list, tuple)) and len(first) == len(second), where
        for index, (x, y) in enumerate(zip(first, second)):
            _assert_equal(x, y, f"{where}[{index}]")
    else:
        assert first == second, (where, first, second)
