"""Synthetic training audio and log reading shared by the training-stage tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from semanticodec.train.data import Clip, CropSampler


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
