"""Model selection: explicit checkpoint > official weights (cached or fetched) > the bundled default
model when nothing is named, and streams of the bundled model decode with it even where official
weights are present. Every test runs offline with an empty cache (conftest)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bitstream import read_file
from semanticodec import hub, weights
from semanticodec.cli import main
from semanticodec.config import ModelConfig
from semanticodec.checkpoint import CheckpointError
from semanticodec.commands import _codec
from tiny import tiny_model


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    """A tiny model saved as the bundled default; no official checkpoint configured."""
    path = tmp_path / "default_model.safetensors"
    model = tiny_model(100, 100)
    weights.save_safetensors(model, path)
    monkeypatch.setattr(weights, "DEFAULT_MODEL", path)
    return model


def test_bundled_model_is_the_fallback(bundled, capsys):
    assert weights.default_model_config() == bundled.config
    assert weights.load_model().config == bundled.config
    assert weights.load_model(100, 100, model="small").config == bundled.config
    assert capsys.readouterr().err.count("semanticodec: using the bundled small model") == 2


def test_named_official_weights_never_fall_back(bundled):
    with pytest.raises(hub.WeightsUnavailable, match="100 tok/s, vocabulary 16384 are not in the cache"):
        weights.load_model(100, 16384)
    with pytest.raises(hub.WeightsUnavailable, match="semanticodec download --token-rate 50 --vocab 16384"):
        weights.load_model(50)
    with pytest.raises(CheckpointError, match="bundled small model is 100 tok/s, vocabulary 100"):
        weights.load_model(50, model="small")


def test_no_weights_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "DEFAULT_MODEL", tmp_path / "absent.safetensors")
    assert weights.default_model_config() is None
    with pytest.raises(hub.WeightsUnavailable, match="offline mode is on"):
        weights.load_model()
    with pytest.raises(CheckpointError, match="no bundled small model"):
        weights.load_model(model="small")


def test_official_weights_take_precedence(bundled, monkeypatch):
    official = tiny_model(50, 100)
    monkeypatch.setattr(hub, "official_model", lambda rate, vocab, offline=None: official)
    assert weights.load_model() is official


def test_bundled_streams_decode_with_the_bundled_model(bundled, monkeypatch):
    official = tiny_model(50, 100)
    monkeypatch.setattr(hub, "official_model", lambda rate, vocab, offline=None: official)
    args = argparse.Namespace(checkpoint=None, device="cpu", batch_size=1, compat="default", quiet=True, model=None, offline=None)
    assert weights.checkpoint_for(bundled.config.model_id) == weights.DEFAULT_MODEL
    assert weights.checkpoint_for(bytes(16)) is None
    assert _codec(args, 100, 100, bundled.config.model_id).config == bundled.config
    assert _codec(args, 100, 100, bytes(16)).model is official


def test_the_package_ships_the_small_default_model():
    assert weights.DEFAULT_MODEL.is_file(), "semanticodec/data/default_model.safetensors is part of the package"
    assert weights.DEFAULT_MODEL.stat().st_size < 50e6
    assert weights.DEFAULT_MODEL.with_name("MODEL_CARD.md").is_file()
    config = weights.default_model_config()
    assert config.to_json() == replace_scale(ModelConfig.small(), config.schedule.scale_factor).to_json()
    assert config.bitrate == 1200.0


def replace_scale(config: ModelConfig, scale: float) -> ModelConfig:
    return dataclasses.replace(config, schedule=dataclasses.replace(config.schedule, scale_factor=scale))


def test_cli_round_trip_with_the_bundled_model(tmp_path, capsys):
    """The README's main job on a machine without official weights (offline, empty cache)."""
    clip = Path(weights.__file__).with_name("data") / "example.flac"
    scdc, wav = tmp_path / "example.scdc", tmp_path / "example.wav"
    assert main(["compress", str(clip), str(scdc), "--quiet"]) == 0
    header, tokens = read_file(scdc)
    assert header.model_id == weights.default_model_config().model_id and header.semantic_vocab == 4096
    assert main(["decompress", str(scdc), str(wav), "--steps", "4", "--quiet"]) == 0
    audio, rate = sf.read(wav)
    original, original_rate = sf.read(clip)
    assert rate == original_rate and len(audio) == len(original) and np.isfinite(audio).all()
