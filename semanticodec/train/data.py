"""Training audio: a manifest of files, loaded once at 16 kHz, and random fixed-length crops.

A manifest is the ``manifest.json`` written by the benchmark corpus builder
(``{"clips": [{"file": relative path, "domain": ..., "duration": ...}, ...]}``, paths relative
to the manifest's folder) or a text file with one audio path per line (relative to it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from semanticodec.audio import AudioError, load_audio
from semanticodec.conditioning import valid_tokens
from semanticodec.constants import SAMPLE_RATE, WINDOW_SAMPLES


@dataclass(frozen=True)
class Clip:
    """One training file: its path and domain (``speech``, ``music``, ``sound`` or ``audio``)."""

    path: Path
    domain: str = "audio"


@dataclass(frozen=True)
class Batch:
    """Random crops: ``audio`` ``[B, S]`` float32 at 16 kHz, zero-padded after ``length``
    ``[B]`` int64 real samples (clips shorter than the crop)."""

    audio: Tensor
    length: Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.audio.to(device), self.length.to(device))

    def window(self) -> Tensor:
        """The first 10.24 s encoder window of each crop, ``[B, 163840]`` (zero-padded)."""
        audio = self.audio[:, :WINDOW_SAMPLES]
        return torch.nn.functional.pad(audio, (0, WINDOW_SAMPLES - audio.shape[1]))

    def window_tokens(self, n_tokens: int) -> Tensor:
        """``[B]`` tokens of that window holding audio (the official rule on the audio's extent)."""
        cutoff = self.length.clamp(max=WINDOW_SAMPLES).double().cpu() / WINDOW_SAMPLES
        return valid_tokens(cutoff, n_tokens).to(self.length.device)


def read_clips(manifest: str | os.PathLike) -> list[Clip]:
    """The clips listed by ``manifest`` (a corpus ``manifest.json``, a folder holding one, or a
    text file of paths)."""
    path = Path(manifest)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        raise ValueError(f"training manifest not found: {path}")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            entries = json.loads(text)["clips"]
            clips = [Clip(path.parent / e["file"], e.get("domain", "audio")) for e in entries]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a corpus manifest ({err})") from None
    else:
        clips = [Clip(path.parent / line.strip()) for line in text.splitlines() if line.strip()]
    if not clips:
        raise ValueError(f"{path}: lists no audio files")
    return clips


class CropSampler:
    """Batches of random crops from in-memory 16 kHz audio.

    Every step's crops depend only on ``(seed, rank, step)``, so a resumed run sees the data
    it would have seen, and the ranks of a distributed run see different crops. A clip is
    drawn with probability proportional to its length within its domain, and a domain with
    probability ``domain_weights[domain]`` (default: proportional to its total length).
    """

    def __init__(
        self,
        clips: list[Clip],
        crop_samples: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        domain_weights: Mapping[str, float] | None = None,
        audio: list[np.ndarray] | None = None,
    ) -> None:
        if crop_samples < 1 or batch_size < 1:
            raise ValueError(f"crop_samples and batch_size must be >= 1, got {crop_samples}, {batch_size}")
        self.clips = clips
        self.audio = audio if audio is not None else [_load(c.path) for c in clips]
        self.crop_samples = int(crop_samples)
        self.batch_size = int(batch_size)
        self.seed, self.rank = int(seed), int(rank)
        lengths = np.array([len(a) for a in self.audio], dtype=np.float64)
        domains = np.array([c.domain for c in clips])
        names = sorted(set(domains.tolist()))
        if domain_weights is None:
            weights = {d: float(lengths[domains == d].sum()) for d in names}
        else:
            weights = {d: float(domain_weights.get(d, 0.0)) for d in names}
        total = sum(weights.values())
        if total <= 0:
            raise ValueError(f"domain_weights {dict(domain_weights or {})} give no weight to the domains {names}")
        self.probabilities = np.zeros(len(clips))
        for d in names:
            mask = domains == d
            self.probabilities[mask] = weights[d] / total * lengths[mask] / lengths[mask].sum()

    @property
    def seconds(self) -> float:
        """Total audio in seconds."""
        return sum(len(a) for a in self.audio) / SAMPLE_RATE

    def draw(self, step: int) -> list[tuple[int, int]]:
        """(clip index, first sample) of each crop of training step ``step``."""
        rng = np.random.default_rng([self.seed, self.rank, step])
        picks = rng.choice(len(self.audio), size=self.batch_size, p=self.probabilities)
        return [(int(i), int(rng.integers(0, max(1, len(self.audio[i]) - self.crop_samples + 1)))) for i in picks]

    def batch(self, step: int) -> Batch:
        """The crops of training step ``step``."""
        out = np.zeros((self.batch_size, self.crop_samples), dtype=np.float32)
        length = np.zeros(self.batch_size, dtype=np.int64)
        for row, (index, start) in enumerate(self.draw(step)):
            piece = self.audio[index][start : start + self.crop_samples]
            out[row, : len(piece)] = piece
            length[row] = len(piece)
        return Batch(torch.from_numpy(out), torch.from_numpy(length))


def _load(path: Path) -> np.ndarray:
    try:
        return load_audio(path)
    except AudioError as err:
        raise ValueError(f"training data: {err}") from None
