"""A training run's configuration: preset files and fields, overrides, the resume check and the
training config that exported weights record (JSON; old files hold a Python literal)."""

from __future__ import annotations

import json
from dataclasses import asdict, fields, is_dataclass, replace

import pytest
import torch

from semanticodec.config import ModelConfig
from semanticodec.serialise import config_dict, config_from_dict
from semanticodec.train import codebook, ldm, mae, vae, vocoder
from semanticodec.train.loop import export_weights
from semanticodec.train.runconfig import (
    RUN_FILE,
    check_resume,
    exported_train_config,
    override,
    parse_setting,
    read_preset,
    run_document,
    train_config_json,
    write_run,
)
from semanticodec.train.vocoder import VocoderTrainConfig
from tiny import tiny_config

PRESETS = {module.__name__.rsplit(".", 1)[1]: module.PRESETS for module in (mae, codebook, vae, vocoder, ldm)}
ALL = [(stage, name) for stage, presets in PRESETS.items() for name in presets]


@pytest.mark.parametrize("stage, name", ALL)
def test_every_preset_reads_back_from_its_json(stage, name):
    preset = PRESETS[stage][name]
    again = config_from_dict(type(preset), json.loads(json.dumps(config_dict(preset))))
    assert again == preset


def _leaves(config, prefix=""):
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value


def _other(value):
    """A valid value other than ``value`` of a tiny preset's field."""
    if isinstance(value, bool):
        return not value
    if value is None:
        return 7
    if isinstance(value, int):
        return 2 * value or 1
    if isinstance(value, float):
        return 0.5 * value or 0.07
    return value[::-1] if len(set(value)) > 1 else value + value


def _json(value):
    return [_json(v) for v in value] if isinstance(value, tuple) else value


@pytest.mark.parametrize("stage", PRESETS)
def test_every_field_can_be_overridden(stage):
    """Each field (nested ones by dotted name) set to another valid value through ``--set``'s parser."""
    preset = PRESETS[stage]["tiny"]
    for key, value in _leaves(preset):
        new = _other(value)
        field, parsed = parse_setting(f"{key}={json.dumps(_json(new))}")
        result = override(preset, {field: parsed})
        got = dict(_leaves(result))[key]
        assert got == new and type(got) is type(new), (key, got, new)


def test_overrides_are_checked():
    preset = vocoder.PRESETS["tiny"]
    with pytest.raises(ValueError, match="no training-config field 'lerning_rate'.*learning_rate"):
        override(preset, {"lerning_rate": 1.0})
    with pytest.raises(ValueError, match="discriminator.nope"):
        override(preset, {"discriminator.nope": 1})
    with pytest.raises(ValueError, match=r"steps: expected int, got 2\.5"):
        override(preset, {"steps": 2.5})
    with pytest.raises(ValueError, match="steps: expected int, got True"):
        override(preset, {"steps": True})
    with pytest.raises(ValueError, match=r"betas\[0\]: expected float"):
        override(preset, {"betas": ["a", 0.9]})
    with pytest.raises(ValueError, match="betas: expected"):
        override(preset, {"betas": [0.9]})
    with pytest.raises(ValueError, match="lr_decay must lie"):  # the dataclass's own checks
        override(preset, {"lr_decay": 2})
    assert override(preset, {"learning_rate": 1}).learning_rate == 1.0  # an int for a float
    assert override(ldm.PRESETS["tiny"], {"decay_steps": None}).decay_steps is None
    assert parse_setting("betas=[0.9, 0.95]") == ("betas", [0.9, 0.95])
    assert parse_setting("name=plain text") == ("name", "plain text")
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        parse_setting("steps")


def _document(preset=None, **inputs):
    return run_document("vocoder", tiny_config(), preset or vocoder.PRESETS["tiny"], {"data": "/corpus", **inputs})


def test_run_file_round_trip_as_a_preset(tmp_path):
    preset = replace(vocoder.PRESETS["tiny"], lambda_fm=3.0)
    write_run(tmp_path, _document(preset))
    path = tmp_path / RUN_FILE
    document = json.loads(path.read_text())
    assert document["stage"] == "vocoder" and document["inputs"] == {"data": "/corpus"}
    assert ModelConfig.from_json(json.dumps(document["model_config"])) == tiny_config()
    assert read_preset(str(path), "vocoder", vocoder.PRESETS) == (preset, tiny_config())
    with pytest.raises(ValueError, match="a preset of the vocoder stage, not of vae"):
        read_preset(str(path), "vae", vae.PRESETS)


def test_hand_written_preset_takes_the_defaults(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"steps": 10, "batch_size": 2, "crop_seconds": 0.25, "learning_rate": 1e-4, "lambda_fm": 1}))
    preset, model = read_preset(str(path), "vocoder", vocoder.PRESETS)
    assert model is None
    assert preset == VocoderTrainConfig(steps=10, batch_size=2, crop_seconds=0.25, learning_rate=1e-4, lambda_fm=1.0)
    path.write_text(json.dumps({"steps": 10}))
    with pytest.raises(ValueError, match="mine.json: VocoderTrainConfig: missing field 'batch_size'"):
        read_preset(str(path), "vocoder", vocoder.PRESETS)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON preset file"):
        read_preset(str(path), "vocoder", vocoder.PRESETS)
    with pytest.raises(ValueError, match="must be one of .* or a preset file"):
        read_preset(str(tmp_path / "absent.json"), "vocoder", vocoder.PRESETS)
    assert read_preset("small", "vocoder", vocoder.PRESETS) == (vocoder.PRESETS["small"], None)


def test_resume_check_names_what_differs(tmp_path):
    check_resume(tmp_path, _document())  # a new run: nothing to compare
    write_run(tmp_path, _document())
    check_resume(tmp_path, _document())
    longer = replace(vocoder.PRESETS["tiny"], steps=100, log_every=5, checkpoint_every=50)
    check_resume(tmp_path, _document(longer))  # how long a run goes may change
    other = replace(vocoder.PRESETS["tiny"], learning_rate=0.5, discriminator=replace(vocoder.PRESETS["tiny"].discriminator, width=1.0))
    with pytest.raises(ValueError) as error:
        check_resume(tmp_path, _document(other, init="/w.safetensors"))
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(tmp_path / RUN_FILE))
    assert "inputs.init (absent) (run) vs \"/w.safetensors\" (now)" in message
    assert "train_config.learning_rate 0.0002 (run) vs 0.5 (now)" in message
    assert "train_config.discriminator.width 0.0625 (run) vs 1.0 (now)" in message
    assert "steps" not in message
    (tmp_path / RUN_FILE).write_text("[")
    with pytest.raises(ValueError, match="not a run configuration"):
        check_resume(tmp_path, _document())


def test_exported_weights_record_the_training_config_as_json(tmp_path):
    preset = vocoder.PRESETS["tiny"]
    path = tmp_path / "vocoder.safetensors"
    export_weights({"vocoder.x": torch.zeros(1)}, path, {"stage": "vocoder", "train_config": train_config_json(preset)})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert json.loads(metadata["train_config"]) == config_dict(preset)
    assert read_preset(str(path), "vocoder", vocoder.PRESETS) == (preset, None)
    # files written before: the repr of dataclasses.asdict, read as a literal (no code runs)
    old = {"train_config": str(asdict(preset))}
    assert config_from_dict(VocoderTrainConfig, exported_train_config(old)) == preset
    assert exported_train_config({}) is None
    with pytest.raises(ValueError, match="neither JSON nor a literal"):
        exported_train_config({"train_config": "__import__('os')"})
