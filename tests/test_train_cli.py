"""`semanticodec train`: every stage from the command line on the audio fixture (tiny model,
tiny presets), the assembled model encodes and decodes, and a 2-process torchrun run."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_tables import toy_tables

from parity import shared_path
from semanticodec.cli import main
from semanticodec.codec import SemantiCodec
from semanticodec.entropy_tables import store_tables
from semanticodec.weights import load_safetensors, save_safetensors
from synthetic import log_rows
from tiny import tiny_config

STAGES = ("mae", "vae", "vocoder")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(manifest listing fixture clips of the three domains, tiny ModelConfig JSON, work dir)."""
    root = tmp_path_factory.mktemp("train")
    audio = shared_path("audio")
    clips = sorted((audio / "speech").glob("asterisk_*.wav"))[:2] + sorted((audio / "music").glob("*.wav"))[:1]
    clips += sorted((audio / "sound").glob("*.flac"))[:1]
    manifest = root / "files.txt"
    manifest.write_text("".join(f"{os.path.relpath(c, root)}\n" for c in clips))
    config = root / "tiny.json"
    config.write_text(tiny_config().to_json())
    return manifest, config, root


def _train(stage: str, setup, *extra: str) -> Path:
    manifest, config, root = setup
    out = root / stage
    args = ["train", stage, "--data", str(manifest), "--out", str(out), "--config", str(config), "--preset", "tiny", "--no-progress"]
    assert main([*args, *extra]) == 0
    return out




VAE_SETTING = ("--set", "kl_weight=2e-06")
"""A preset field the VAE run sets: its run.json and exported weights record it, and resuming the
run needs it again."""


@pytest.fixture(scope="module")
def trained(setup) -> dict[str, Path]:
    outputs = {stage: _train(stage, setup, *(VAE_SETTING if stage == "vae" else ())) for stage in STAGES}
    outputs["codebook"] = _train("codebook", setup, "--mae", str(outputs["mae"] / "mae.safetensors"), "--windows", "4")
    outputs["ldm"] = _train(
        "ldm", setup, "--mae", str(outputs["mae"] / "mae.safetensors"), "--vae", str(outputs["vae"] / "vae.safetensors"),
        "--codebook", str(outputs["codebook"] / "codebook_50_0.npy"), "--windows", "4",
    )
    return outputs


@pytest.mark.parametrize("stage", [*STAGES, "ldm"])
def test_stage_logs_and_exports(trained, stage):
    out = trained[stage]
    rows = log_rows(out)
    assert [int(r["step"]) for r in rows][-1] == 3
    assert all(np.isfinite(float(v)) for r in rows for k, v in r.items() if k != "step")
    assert (out / f"{stage}.safetensors").is_file() and (out / "checkpoint.pt").is_file()


def test_codebook_stage(trained):
    codebook = np.load(trained["codebook"] / "codebook_50_0.npy")
    assert codebook.shape == (100, tiny_config().feature_dim) and np.isfinite(codebook).all()
    assert len(np.unique(codebook.round(5), axis=0)) == 100


def test_assembled_model_encodes_and_decodes(trained, setup, tmp_path, capsys):
    output = tmp_path / "model.safetensors"
    stages = [str(trained[s] / f"{s}.safetensors") for s in (*STAGES, "ldm")]
    codebook = str(trained["codebook"] / "codebook_50_0.npy")
    assert main(["train", "assemble", "--config", str(setup[1]), "--codebook", codebook, *stages, "-o", str(output)]) == 0
    model = load_safetensors(output)
    assert model.config.schedule.scale_factor != 1.0
    ldm = load_safetensors_part(trained["ldm"] / "ldm.safetensors")
    assert torch.equal(model.unet.state_dict()["out.2.weight"], ldm["unet.out.2.weight"].half().float())
    codec = SemantiCodec.from_pretrained(output, token_rate=100, semantic_vocab_size=100, steps=2, seed=0, device="cpu")
    clip = sorted(shared_path("audio", "speech").glob("*.wav"))[0]
    encoded = codec.encode(clip)
    assert encoded.tokens.max(axis=0).tolist() < [100, 64]
    audio = codec.decode(encoded)
    assert np.isfinite(audio).all() and audio.shape[-1] == encoded.sample_count


def test_assemble_on_a_base_model_replaces_the_retrained_modules_only(trained, setup, tmp_path):
    full = tmp_path / "full.safetensors"
    stages = [str(trained[s] / f"{s}.safetensors") for s in (*STAGES, "ldm")]
    codebook = str(trained["codebook"] / "codebook_50_0.npy")
    assert main(["train", "assemble", "--config", str(setup[1]), "--codebook", codebook, *stages, "-o", str(full)]) == 0
    # a base whose vocoder differs, then the vocoder stage's weights put back on it
    base_model = load_safetensors(full)
    with torch.no_grad():
        for p in base_model.vocoder.parameters():
            p.add_(1.0)
    base = tmp_path / "base.safetensors"
    save_safetensors(base_model, base)
    # the base carries entropy tables of its own model id; they do not travel to the new model
    config = base_model.config
    store_tables(toy_tables(100, 100, config.acoustic_vocab_size, config.model_id), base, into_model=True)
    output = tmp_path / "model.safetensors"
    vocoder = str(trained["vocoder"] / "vocoder.safetensors")
    assert main(["train", "assemble", "--config", str(setup[1]), vocoder, "-o", str(output)]) == 2  # no codebook, no base
    assert not output.exists()
    assert main(["train", "assemble", "--config", str(setup[1]), "--base", str(base), vocoder, "-o", str(output)]) == 0
    expected, got, based = (load_safetensors_part(p) for p in (full, output, base))
    assert any(k.startswith("entropy.") for k in based)
    assert expected.keys() == got.keys()
    for key, value in got.items():
        assert torch.equal(value, expected[key]), key
    assert any(not torch.equal(based[k], got[k]) for k in got if k.startswith("vocoder."))


def test_assemble_takes_running_ldm_and_vocoder_checkpoints_as_their_exports(trained, setup, tmp_path):
    """The checkpoint.pt of an ldm run (its weight average) and of a vocoder run (its generator,
    weight norm folded) assemble to the same model as the weights the runs exported; another
    stage's checkpoint is refused in one line."""
    codebook = str(trained["codebook"] / "codebook_50_0.npy")
    common = ["train", "assemble", "--config", str(setup[1]), "--codebook", codebook]
    stages = [str(trained[s] / f"{s}.safetensors") for s in STAGES]
    exported, running = tmp_path / "exported.safetensors", tmp_path / "running.safetensors"
    assert main([*common, *stages, str(trained["ldm"] / "ldm.safetensors"), "-o", str(exported)]) == 0
    checkpoints = [*stages[:2], str(trained["vocoder"] / "checkpoint.pt"), str(trained["ldm"] / "checkpoint.pt")]
    assert main([*common, *checkpoints, "-o", str(running)]) == 0
    expected, got = load_safetensors_part(exported), load_safetensors_part(running)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    wrong = tmp_path / "wrong.safetensors"
    assert main([*common, str(trained["vae"] / "checkpoint.pt"), *stages[:1], str(trained["ldm"] / "ldm.safetensors"), "-o", str(wrong)]) == 2
    assert not wrong.exists()

def load_safetensors_part(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_resume_continues_from_checkpoint_with_the_runs_settings(setup, trained, capsys):
    manifest, config, root = setup
    out = trained["vae"]
    before = (out / "checkpoint.pt").read_bytes()
    args = ["train", "vae", "--data", str(manifest), "--out", str(out), "--config", str(config), "--preset", "tiny", "--no-progress"]
    capsys.readouterr()
    assert main([*args, "--train-steps", "5"]) == 2  # without the run's --set
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "run.json: this run was started with other settings" in error
    assert "train_config.kl_weight 2e-06 (run) vs 1e-06 (now)" in error, error
    assert (out / "checkpoint.pt").read_bytes() == before
    out = _train("vae", setup, *VAE_SETTING, "--train-steps", "5")
    assert [int(r["step"]) for r in log_rows(out)] == [1, 2, 3, 4, 5]
    assert json.loads((out / "run.json").read_text())["train_config"]["steps"] == 5


@pytest.mark.parametrize("stage", [*STAGES, "codebook", "ldm"])
def test_run_and_exported_weights_record_the_configuration(setup, trained, stage):
    from safetensors import safe_open

    from semanticodec.serialise import config_dict

    manifest, _, _ = setup
    module = importlib.import_module(f"semanticodec.train.{stage}")
    document = json.loads((trained[stage] / "run.json").read_text())
    expected = module.PRESETS["tiny"]
    if stage in ("codebook", "ldm"):
        expected = replace(expected, windows=4)
    recorded = document["train_config"]
    if stage == "vae":
        expected = replace(expected, kl_weight=2e-6, steps=recorded["steps"])  # resumed for longer by the test above
    assert document["stage"] == stage
    assert config_dict(expected) == recorded
    assert document["model_config"] == json.loads(tiny_config().to_json())
    assert document["inputs"]["data"] == str(manifest.resolve())
    if stage == "codebook":
        return
    with safe_open(str(trained[stage] / f"{stage}.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["stage"] == stage and json.loads(metadata["model_config"]) == document["model_config"]
    assert json.loads(metadata["train_config"]) == config_dict(expected)
    assert json.loads(metadata["inputs"]) == document["inputs"]


def test_a_runs_file_is_a_preset(setup, trained, tmp_path, capsys):
    manifest, _, _ = setup
    out = tmp_path / "again"
    args = ["train", "vae", "--data", str(manifest), "--out", str(out), "--no-progress"]
    source = trained["vae"] / "run.json"
    capsys.readouterr()
    assert main([*args, "--preset", str(source), "--set", "kl_weight=1", "--set", "kl_weight=2"]) == 2
    assert "kl_weight is set twice" in capsys.readouterr().err
    assert main([*args, "--preset", str(source), "--lr", "0.1", "--set", "learning_rate=0.2"]) == 2
    assert "learning_rate is set twice" in capsys.readouterr().err
    assert main([*args, "--preset", str(source), "--set", "disc_layer=2"]) == 2
    assert "no training-config field 'disc_layer'" in capsys.readouterr().err
    assert main([*args, "--preset", "huge"]) == 2
    assert "--preset must be one of" in capsys.readouterr().err
    assert not out.exists()
    # the run's model config and every preset field, but one step
    assert main([*args, "--preset", str(source), "--train-steps", "1"]) == 0
    ours, theirs = (json.loads(p.read_text()) for p in (out / "run.json", source))
    assert ours["train_config"] == {**theirs["train_config"], "steps": 1}
    assert ours["model_config"] == theirs["model_config"] and ours["inputs"] == theirs["inputs"]
    # the exported weights of a run are a preset too
    assert main([*args, "--preset", str(out / "vae.safetensors"), "--train-steps", "2"]) == 0
    assert json.loads((out / "run.json").read_text())["train_config"] == {**theirs["train_config"], "steps": 2}


def test_ldm_takes_the_vae_checkpoint_and_resumes_from_a_compact_one(setup, trained, tmp_path, capsys):
    manifest, config, _ = setup
    out = tmp_path / "ldm"
    args = ["train", "ldm", "--data", str(manifest), "--config", str(config), "--preset", "tiny", "--no-progress", "--windows", "4"]
    args += ["--mae", str(trained["mae"] / "mae.safetensors"), "--codebook", str(trained["codebook"] / "codebook_50_0.npy")]
    # the VAE stage's training checkpoint gives the same windows as its export (both of the stage's current state)
    exported = tmp_path / "ldm_exported_vae"
    assert main([*args, "--vae", str(trained["vae"] / "vae.safetensors"), "--out", str(exported), "--train-steps", "1"]) == 0
    args += ["--vae", str(trained["vae"] / "checkpoint.pt")]
    assert main([*args, "--out", str(out), "--train-steps", "2"]) == 0
    windows = [torch.load(d / "windows.pt", weights_only=True) for d in (out, exported)]
    assert windows[0].keys() == windows[1].keys()
    assert all(torch.equal(windows[0][k], windows[1][k]) for k in windows[1])

    compact = tmp_path / "compact.pt"
    capsys.readouterr()
    assert main(["train", "compact", str(out / "checkpoint.pt"), "-o", str(compact)]) == 0
    assert json.loads(capsys.readouterr().out)["bytes"] == compact.stat().st_size
    assert main(["train", "compact", str(out / "checkpoint.pt"), "-o", str(compact)]) == 2
    assert "already exists" in capsys.readouterr().err
    fresh = tmp_path / "fresh"  # another machine: the compact checkpoint, the windows made again
    fresh.mkdir()
    shutil.copy(compact, fresh / "checkpoint.pt")
    assert main([*args, "--out", str(fresh), "--train-steps", "3"]) == 0
    assert [int(r["step"]) for r in log_rows(fresh)] == [3]


def test_missing_inputs_are_clear_errors(setup, tmp_path, capsys):
    manifest, config, _ = setup
    assert main(["train", "mae", "--data", str(tmp_path / "none.json"), "--out", str(tmp_path / "o"), "--config", str(config)]) == 2
    assert "training manifest not found" in capsys.readouterr().err
    args = ["train", "ldm", "--data", str(manifest), "--out", str(tmp_path / "l"), "--config", str(config), "--preset", "tiny"]
    assert main([*args, "--mae", str(tmp_path / "m.safetensors"), "--vae", "v", "--codebook", "c"]) == 2
    assert "c: no such codebook file" in capsys.readouterr().err
    codebook = np.zeros((100, tiny_config().feature_dim), np.float32)
    np.save(tmp_path / "c.npy", codebook)
    assert main([*args, "--mae", str(tmp_path / "m.safetensors"), "--vae", "v", "--codebook", str(tmp_path / "c.npy")]) == 2
    assert "AudioMAE weights not found" in capsys.readouterr().err
    assert not (tmp_path / "l" / "run.json").exists()  # written once the run has its inputs
    assert main(["train", "vae", "--data", str(manifest), "--out", str(tmp_path / "p"), "--config", "huge"]) == 2
    assert "--config must be one of" in capsys.readouterr().err


def test_two_process_torchrun(setup, tmp_path):
    """DDP with gloo: 2 CPU processes train the VAE stage; the loop checks at every checkpoint
    that both processes hold identical weights (it raises otherwise)."""
    manifest, config, _ = setup
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "semanticodec"]
    command += ["train", "vae", "--data", str(manifest), "--out", str(out), "--config", str(config), "--preset", "tiny", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [int(r["step"]) for r in log_rows(out)] == [1, 2, 3]
    assert load_safetensors_part(out / "vae.safetensors")
