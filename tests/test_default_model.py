"""Model selection: explicit checkpoint > official weights (cached or fetched) > the bundled default
model when nothing is named, and streams of the bundled model decode with it even where official
weights are present; the bundled model's round trip meets a quality floor, and the README's demo
command and Python example run on it. Every test runs offline with an empty cache (conftest)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmarks.metrics import mel_distance
from semanticodec import codec as codec_module
from semanticodec import demo, hub, weights
from semanticodec.bitstream import read_file
from semanticodec.cli import main
from semanticodec.codec import SemantiCodec
from semanticodec.commands.codec import load_codec
from semanticodec.config import ModelConfig
from semanticodec.entropy_tables import find_tables
from semanticodec.official import CheckpointError
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
    with pytest.raises(hub.WeightsUnavailable, match="semanticodec download --token-rate 50 --semantic-vocab-size 16384"):
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
    monkeypatch.setattr(weights, "official_model", lambda rate, vocab, offline=None, with_decoder=True, staged=False: official)
    assert weights.load_model() is official


def test_bundled_streams_decode_with_the_bundled_model(bundled, monkeypatch):
    official = tiny_model(50, 100)
    monkeypatch.setattr(weights, "official_model", lambda rate, vocab, offline=None, with_decoder=True, staged=False: official)
    args = argparse.Namespace(checkpoint=None, device="cpu", batch_size=1, compat="default", no_progress=True, model=None, offline=None)
    assert weights.checkpoint_for(bundled.config.model_id) == weights.DEFAULT_MODEL
    assert weights.checkpoint_for(bytes(16)) is None
    assert load_codec(args, 100, 100, bundled.config.model_id).config == bundled.config
    assert load_codec(args, 100, 100, bytes(16)).model is official


def test_the_package_ships_the_small_default_model():
    assert weights.DEFAULT_MODEL.is_file(), "semanticodec/data/default_model.safetensors is part of the package"
    assert weights.DEFAULT_MODEL.stat().st_size < 50e6
    assert weights.DEFAULT_MODEL.with_name("MODEL_CARD.md").is_file()
    config = weights.default_model_config()
    # the small architecture; the latent scale and semantic-only decoding come from its training
    trained = dataclasses.replace(replace_scale(ModelConfig.small(), config.schedule.scale_factor), semantic_only_decoding=True)
    assert config.to_json() == trained.to_json()
    assert config.bitrate == 1200.0


def replace_scale(config: ModelConfig, scale: float) -> ModelConfig:
    return dataclasses.replace(config, schedule=dataclasses.replace(config.schedule, scale_factor=scale))


ROUND_TRIP_MEL = 2.6
"""Ceiling of the multi-scale mel distance (benchmarks.metrics.mel_distance) between the bundled
example clip and its round trip through the bundled model with 4 DDIM steps (2.34 measured)."""

CONTROL_MARGIN = 0.3
"""The round trip must beat decoding the clip's tokens with random semantic ids by this much
(2.34 against 2.92 measured): the tokens, not the decoder alone, carry the audio."""


def test_cli_round_trip_with_the_bundled_model(tmp_path, capsys):
    """The README's main job on a machine without official weights (offline, empty cache), with a quality floor."""
    clip = Path(weights.__file__).with_name("data") / "example.flac"
    scdc, wav = tmp_path / "example.scdc", tmp_path / "example.wav"
    assert main(["compress", str(clip), str(scdc), "--no-progress"]) == 0
    header, tokens = read_file(scdc, tables=find_tables)
    assert header.model_id == weights.default_model_config().model_id and header.semantic_vocab_size == 4096
    fixed = tmp_path / "fixed.scdc"
    assert main(["compress", str(clip), str(fixed), "--no-progress", "--no-entropy"]) == 0
    fixed_header, fixed_tokens = read_file(fixed)
    np.testing.assert_array_equal(fixed_tokens, tokens)
    # entropy coded: 17.6 % smaller for this clip with the v2 tables (30 % on the held-out corpus)
    assert (header.version, fixed_header.version) == (2, 1) and scdc.stat().st_size < 0.85 * fixed.stat().st_size
    assert main(["decompress", str(scdc), str(wav), "--sampler", "ddim", "--steps", "4", "--no-progress"]) == 0
    audio, rate = sf.read(wav, dtype="float32")
    original, original_rate = sf.read(clip, dtype="float32")
    assert rate == original_rate and len(audio) == len(original) and np.isfinite(audio).all()
    distance = mel_distance(original, audio)
    assert distance < ROUND_TRIP_MEL, f"round trip mel distance {distance:.3f} >= {ROUND_TRIP_MEL}"
    codec = SemantiCodec.from_pretrained(sampler="ddim", steps=4, seed=0, device="cpu")
    wrong = tokens.copy()
    wrong[:, 0] = np.random.default_rng(0).integers(0, header.semantic_vocab_size, len(tokens))
    control = mel_distance(original, codec.decode(wrong)[: len(original)])
    assert distance < control - CONTROL_MARGIN, f"round trip {distance:.3f} is not better than random semantic ids ({control:.3f})"


def test_the_readme_demo_command_runs_the_main_job(tmp_path, capsys):
    """The README's first set-up command installs torch==2.13.0, then the package, then runs
    ``python -m semanticodec.demo`` (here in-process), which writes only into its output folder."""
    readme = (Path(weights.__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("```bash\n") : readme.index("```\n", readme.index("```bash\n"))]
    command = next(line for line in block.splitlines() if line.startswith("python3 -m venv .venv && "))
    steps = ("pip install -q torch==2.13.0 && ", "pip install -q -e . && ", "python -m semanticodec.demo")
    positions = [command.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions) and command.endswith(steps[-1]), command
    out = tmp_path / "demo"
    assert demo.main([str(out)]) == 0
    assert list(tmp_path.iterdir()) == [out]
    assert sorted(p.name for p in out.iterdir()) == ["example.scdc", "example.wav", "example_tokens.npy"]
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in printed if line.startswith("$ semanticodec ")] == ["compress", "info", "decompress", "unpack"]
    clip = weights.DEFAULT_MODEL.with_name("example.flac")
    assert sf.info(out / "example.wav").frames == sf.info(clip).frames
    tokens = np.load(out / "example_tokens.npy")
    assert tokens.shape == (360, 2) and printed[-2] == "tokens: (360, 2) token pairs (semantic, acoustic)"
    assert demo.main([str(out / "example.wav" / "x")]) == 2
    assert "python -m semanticodec.demo: error: cannot create" in capsys.readouterr().err


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


@pytest.mark.parametrize("native", [True, False])
def test_bundled_model_decodes_in_mixed_precision_only_where_bfloat16_is_native(bundled, monkeypatch, native):
    """BUNDLED_PRECISION where bfloat16 is native, float32 elsewhere, for other models, under
    compat="official" and when the user says float32."""
    monkeypatch.setattr(codec_module, "native_bfloat16", lambda device: native)
    model = weights.load_model()
    assert SemantiCodec(model, device="cpu").precision == (weights.BUNDLED_PRECISION if native else "float32")
    assert weights.BUNDLED_PRECISION == "mixed"
    assert SemantiCodec(model, device="cpu", compat="official").precision == "float32"
    assert SemantiCodec(model, device="cpu", precision="float32").precision == "float32"
    assert SemantiCodec(tiny_model(50, 100), device="cpu").precision == "float32"


def test_native_bfloat16_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not codec_module.native_bfloat16(torch.device("cpu"))
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert codec_module.native_bfloat16(torch.device("cpu"))
    assert not codec_module.native_bfloat16(torch.device("meta"))


def test_the_readme_python_example_runs_on_the_bundled_model(tmp_path, monkeypatch, capsys):
    """The Python block of the README's Usage section, on a fresh install (4 DDIM steps instead of 50)."""
    readme = (Path(weights.__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    usage = readme[readme.index("## Usage") :]
    code = usage[usage.index("```python\n") + len("```python\n") : usage.index("```\n", usage.index("```python"))]
    pretrained = SemantiCodec.from_pretrained.__func__
    monkeypatch.setattr(SemantiCodec, "from_pretrained", classmethod(lambda cls, *a, **k: pretrained(cls, *a, **{"steps": 4, **k})))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert sf.info("example_decoded.wav").frames == sf.info(weights.DEFAULT_MODEL.with_name("example.flac")).frames
    assert capsys.readouterr().out.splitlines()[-1] == "100 50.0 1200.0"
