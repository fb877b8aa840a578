"""Model selection: explicit checkpoint > official checkpoints > the bundled default model, and
streams of the bundled model decode with it even where official checkpoints are present; the
bundled model's round trip meets a quality floor, and the README's Python example runs on it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.metrics import mel_distance
from semanticodec import weights
from semanticodec.bitstream import read_file
from semanticodec.cli import main
from semanticodec.codec import SemantiCodec
from semanticodec.commands.codec import load_codec
from semanticodec.config import ModelConfig
from semanticodec.official import CheckpointError
from tiny import tiny_model


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    """A tiny model saved as the bundled default; no official checkpoint configured."""
    path = tmp_path / "default_model.safetensors"
    model = tiny_model(100, 100)
    weights.save_safetensors(model, path)
    monkeypatch.setattr(weights, "DEFAULT_MODEL", path)
    monkeypatch.setattr(weights, "find_official_root", lambda checkpoint=None: None)
    return model


def test_bundled_model_is_the_fallback(bundled):
    assert weights.default_model_config() == bundled.config
    assert weights.load_model().config == bundled.config
    assert weights.load_model(100, 100).config == bundled.config


def test_bundled_model_mismatch_names_what_exists(bundled):
    with pytest.raises(CheckpointError, match="bundled default model is 100 tok/s, vocabulary 100"):
        weights.load_model(100, 16384)
    with pytest.raises(CheckpointError, match="no official SemantiCodec checkpoint found for 50 tok/s"):
        weights.load_model(50)


def test_no_weights_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "DEFAULT_MODEL", tmp_path / "absent.safetensors")
    monkeypatch.setattr(weights, "find_official_root", lambda checkpoint=None: None)
    assert weights.default_model_config() is None
    with pytest.raises(CheckpointError, match="no SemantiCodec weights found"):
        weights.load_model()


def test_official_checkpoints_take_precedence(bundled, tmp_path, monkeypatch):
    official = tiny_model(50, 100)
    monkeypatch.setattr(weights, "find_official_root", lambda checkpoint=None: tmp_path)
    monkeypatch.setattr(weights, "official_files", lambda root, rate, vocab: None)
    monkeypatch.setattr(weights, "load_official", lambda root, rate, vocab, with_decoder=True: official)
    assert weights.load_model() is official


def test_bundled_streams_decode_with_the_bundled_model(bundled, tmp_path, monkeypatch):
    official = tiny_model(50, 100)
    monkeypatch.setattr(weights, "find_official_root", lambda checkpoint=None: tmp_path)
    monkeypatch.setattr(weights, "official_files", lambda root, rate, vocab: None)
    monkeypatch.setattr(weights, "load_official", lambda root, rate, vocab, with_decoder=True: official)
    args = argparse.Namespace(checkpoint=None, device="cpu", batch_size=1, compat="default", no_progress=True)
    assert weights.checkpoint_for(bundled.config.model_id) == weights.DEFAULT_MODEL
    assert weights.checkpoint_for(bytes(16)) is None
    assert load_codec(args, 100, 100, bundled.config.model_id).config == bundled.config
    assert load_codec(args, 100, 100, bytes(16)).model is official


def test_the_package_ships_the_small_default_model():
    assert weights.DEFAULT_MODEL.is_file(), "semanticodec/data/default_model.safetensors is part of the package"
    assert weights.DEFAULT_MODEL.stat().st_size < 50e6
    assert weights.DEFAULT_MODEL.with_name("MODEL_CARD.md").is_file()
    config = weights.default_model_config()
    assert config.to_json() == replace_scale(ModelConfig.small(), config.schedule.scale_factor).to_json()
    assert config.bitrate == 1200.0


def replace_scale(config: ModelConfig, scale: float) -> ModelConfig:
    return dataclasses.replace(config, schedule=dataclasses.replace(config.schedule, scale_factor=scale))


ROUND_TRIP_MEL = 2.6
"""Ceiling of the multi-scale mel distance (benchmarks.metrics.mel_distance) between the bundled
example clip and its round trip through the bundled model with 4 DDIM steps (2.34 measured)."""

CONTROL_MARGIN = 0.3
"""The round trip must beat decoding the clip's tokens with random semantic ids by this much
(2.34 against 2.92 measured): the tokens, not the decoder alone, carry the audio."""


def test_cli_round_trip_with_the_bundled_model(tmp_path, monkeypatch, capsys):
    """The README's main job on a machine without official checkpoints, with a quality floor."""
    monkeypatch.setattr(weights, "find_official_root", lambda checkpoint=None: None)
    clip = Path(weights.__file__).with_name("data") / "example.flac"
    scdc, wav = tmp_path / "example.scdc", tmp_path / "example.wav"
    assert main(["compress", str(clip), str(scdc), "--no-progress"]) == 0
    header, tokens = read_file(scdc)
    assert header.model_id == weights.default_model_config().model_id and header.semantic_vocab == 4096
    assert main(["decompress", str(scdc), str(wav), "--sampler", "ddim", "--steps", "4", "--no-progress"]) == 0
    audio, rate = sf.read(wav, dtype="float32")
    original, original_rate = sf.read(clip, dtype="float32")
    assert rate == original_rate and len(audio) == len(original) and np.isfinite(audio).all()
    distance = mel_distance(original, audio)
    assert distance < ROUND_TRIP_MEL, f"round trip mel distance {distance:.3f} >= {ROUND_TRIP_MEL}"
    codec = SemantiCodec.from_pretrained(sampler="ddim", steps=4, seed=0, device="cpu")
    wrong = tokens.copy()
    wrong[:, 0] = np.random.default_rng(0).integers(0, header.semantic_vocab, len(tokens))
    control = mel_distance(original, codec.decode(wrong)[: len(original)])
    assert distance < control - CONTROL_MARGIN, f"round trip {distance:.3f} is not better than random semantic ids ({control:.3f})"


def test_bundled_model_decodes_with_its_measured_default_sampling(bundled):
    """The bundled model decodes with BUNDLED_SAMPLING (chosen in benchmarks/RESULTS.md); other
    models and compat="official" keep the official 50-step DDIM."""
    from semanticodec.samplers import OFFICIAL_SAMPLING

    codec = SemantiCodec(weights.load_model(), device="cpu")
    assert (codec.sampler, codec.steps) == weights.BUNDLED_SAMPLING
    official = SemantiCodec(weights.load_model(), device="cpu", compat="official")
    assert (official.sampler, official.steps) == OFFICIAL_SAMPLING == ("ddim", 50)
    other = SemantiCodec(tiny_model(50, 100), device="cpu")
    assert (other.sampler, other.steps) == OFFICIAL_SAMPLING


def test_the_readme_python_example_runs_on_the_bundled_model(tmp_path, monkeypatch, capsys):
    """The Python block of the README's Usage section, on a fresh install (4 DDIM steps instead of 50)."""
    readme = (Path(weights.__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    usage = readme[readme.index("## Usage") :]
    code = usage[usage.index("```python\n") + len("```python\n") : usage.index("```\n", usage.index("```python"))]
    monkeypatch.setattr(weights, "find_official_root", lambda checkpoint=None: None)
    pretrained = SemantiCodec.from_pretrained.__func__
    monkeypatch.setattr(SemantiCodec, "from_pretrained", classmethod(lambda cls, *a, **k: pretrained(cls, *a, **{"steps": 4, **k})))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert sf.info("example_decoded.wav").frames == sf.info(weights.DEFAULT_MODEL.with_name("example.flac")).frames
    assert capsys.readouterr().out.splitlines()[-1] == "100 50.0 1200.0"
