"""The vocoder of a model: the official HiFi-GAN or the frame-rate Vocos, chosen by its config.

Both map a natural-log 64-bin mel at 100 frames/s to 16 kHz audio and offer ``forward(mel
[B, bins, frames]) -> [B, 1, samples]``, ``mel_to_waveform(mel [B, 1, frames, bins])`` and
``config.sample_count(frames)``; their weights sit under ``vocoder.*`` in a model's state dict.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from semanticodec.nn.hifigan import HiFiGAN, HiFiGANConfig
from semanticodec.nn.vocos import Vocos, VocosConfig

VocoderConfig = HiFiGANConfig | VocosConfig
"""Configuration of either vocoder."""

Vocoder = HiFiGAN | Vocos


def build_vocoder(config: VocoderConfig) -> Vocoder:
    """The generator network that ``config`` describes (randomly initialised)."""
    if isinstance(config, VocosConfig):
        return Vocos(config)
    if isinstance(config, HiFiGANConfig):
        return HiFiGAN(config)
    raise TypeError(f"not a vocoder configuration: {type(config).__name__}")


def vocoder_config_from_dict(values: dict[str, Any]) -> VocoderConfig:
    """The vocoder configuration serialised as ``values`` (JSON lists become tuples).

    The two configurations have different fields (a Vocos config has ``n_fft``), which tells
    them apart; the HiFi-GAN's serialised form is unchanged since the official release, so
    model ids derived from it stay the same.
    """
    kind = VocosConfig if "n_fft" in values else HiFiGANConfig
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields {unknown}")
    return kind(**{k: _tuplify(v) for k, v in values.items()})


def _tuplify(value: Any) -> Any:
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value
