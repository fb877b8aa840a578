"""The LDM stage on a GPU lent for minutes, run here on CPU with the tiny model: the travel pack
(size cap, Opus round trip, weights, checks), the burst (time budget, split outputs, bf16
autocast, non-finite losses), continuing from its outputs with ``train ldm``, the prepared
script, and one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import semanticodec.train.pack as pack_module
import semanticodec.weights as weights_module
from parity import shared_path
from semanticodec.cli import main
from semanticodec.features import mel64
from semanticodec.model import SemantiCodecModel
from semanticodec.train.assemble import assemble
from semanticodec.train.burst import BurstConfig, NonFiniteLoss, _BurstStep, run_burst
from semanticodec.train.data import CropSampler, read_clips
from semanticodec.train.ldm import PRESETS, CachedWindows, LDMStage, encode_windows
from semanticodec.train.loop import save_checkpoint, train
from semanticodec.train.pack import read_pack
from semanticodec.weights import load_state_dict, save_safetensors
from synthetic import log_rows, tone_and_noise_sampler
from tiny import tiny_config, tiny_model

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = "speech=0.5,music=0.3,sound=0.2"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A corpus manifest of fixture clips of the three domains, the tiny config, a model file
    with its VAE (encoder too), AudioMAE and codebook, and an ldm-stage checkpoint."""
    root = tmp_path_factory.mktemp("burst")
    audio = shared_path("audio")
    clips = sorted((audio / "speech").glob("asterisk_*.wav"))[:2] + sorted((audio / "music").glob("*.wav"))[:1]
    clips += sorted((audio / "sound").glob("*.flac"))[:1]
    entries = [{"file": os.path.relpath(c, root), "domain": c.parent.name} for c in clips]
    (root / "manifest.json").write_text(json.dumps({"clips": entries}))
    config = tiny_config()
    (root / "tiny.json").write_text(config.to_json())
    torch.manual_seed(0)
    model = SemantiCodecModel(config, torch.randn(config.semantic_vocab_size, config.feature_dim), with_vae_encoder=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k.startswith(("vae.", "audiomae."))}
    state["semantic.codebook"] = model.semantic.codebook.contiguous()
    save_file(state, str(root / "model.safetensors"))
    stage = LDMStage(config, PRESETS["tiny"], codebook=model.semantic.codebook)
    stage.schedule.scale_factor.fill_(0.5)
    save_checkpoint(stage, 7, root / "ldm_checkpoint.pt")
    return {"root": root, "data": root / "manifest.json", "config": root / "tiny.json", "model": root / "model.safetensors"}


def _pack_args(setup, out: Path, *extra: str) -> list[str]:
    model = str(setup["model"])
    args = ["train", "pack", "--data", str(setup["data"]), "--config", str(setup["config"]), "--preset", "tiny", "--domain-weights", WEIGHTS]
    return [*args, "--vae", model, "--mae", model, "--codebook", model, "-o", str(out), "--no-progress", *extra]


@pytest.fixture(scope="module")
def pack(setup) -> Path:
    out = setup["root"] / "pack"
    assert main(_pack_args(setup, out, "--init", str(setup["root"] / "ldm_checkpoint.pt"), "--max-mib", "2.6")) == 0
    return out


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_pack_fills_its_cap_and_round_trips_the_audio(setup, pack):
    files = _files(pack)
    manifest = json.loads((pack / "manifest.json").read_text())
    assert sum(files.values()) == manifest["bytes"] <= 2.6 * 2**20
    assert sum(files.values()) > 2.6 * 2**20 - 40_000  # full: one more 10.24 s window would not fit
    assert not [p for p in pack.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert manifest["stage"] == "ldm" and manifest["train_config"] == json.loads(json.dumps(asdict(PRESETS["tiny"])))
    assert manifest["frozen"] == {"audiomae": "pack", "codebook": "pack"} and manifest["domain_weights"]["music"] == 0.3
    travel = read_pack(pack)
    assert travel.model_config == tiny_config()
    start, stats = travel.start_weights()
    assert float(start["schedule.scale_factor"]) == 0.5 and stats["embed_sum"].shape == (64, 32)
    assert travel.weights["unet.out.2.weight"].dtype == torch.float16 and "vae.decoder.conv_in.weight" not in travel.weights

    # the windows are those the sampler draws (with the domain weights), within Opus's tolerance
    sampler = CropSampler(read_clips(setup["data"]), 163840, 1, seed=1, domain_weights=manifest["domain_weights"])
    decoded = travel.audio(workers=2)
    assert len(decoded) == len(travel.clips) >= 3
    for step, (audio, clip) in enumerate(zip(decoded, travel.clips)):
        (index, start), = sampler.draw(step)
        original = sampler.audio[index][start : start + 163840]
        assert clip.domain == sampler.clips[index].domain and len(audio) == len(original)
        pair = torch.from_numpy(np.stack([original, audio]))
        mels = mel64(pair, framing="audioldm_train")
        assert float((mels[0] - mels[1]).abs().mean()) < 0.35, step  # 24 kbit/s: 0.17-0.27 on the corpus


def test_pack_errors_are_one_line_and_leave_nothing(setup, pack, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(_pack_args(setup, out, "--init", str(setup["root"] / "ldm_checkpoint.pt"), "--max-mib", "1")) == 2
    assert "the weights alone take" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(_pack_args(setup, out, "--init", str(setup["model"]))) == 2
    assert "holds no LDM weights" in capsys.readouterr().err
    assert main(_pack_args(setup, out, "--init", str(setup["config"]))) == 2
    err = capsys.readouterr().err
    assert "not a checkpoint of the ldm stage" in err and err.count("\n") == 1
    assert main(_pack_args(setup, pack, "--max-mib", "2.6")) == 2
    assert "already exists (use --force" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    assert main(_pack_args(setup, other, "--force")) == 2
    assert "is not a travel pack; refusing to replace it" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [other] and list(other.iterdir()) == []


def test_pack_refers_to_the_bundled_model_and_the_burst_checks_it(setup, tmp_path, monkeypatch, capsys):
    bundled = tmp_path / "bundled.safetensors"
    shutil.copy(setup["model"], bundled)
    monkeypatch.setattr(weights_module, "DEFAULT_MODEL", bundled)
    monkeypatch.setattr(pack_module, "DEFAULT_MODEL", bundled)
    args = ["train", "pack", "--data", str(setup["data"]), "--config", str(setup["config"]), "--preset", "tiny", "--no-progress"]
    out = tmp_path / "pack"
    assert main([*args, "--vae", str(setup["model"]), "-o", str(out), "--max-mib", "0.6"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["frozen"] == {"audiomae": "bundled", "codebook": "bundled"} and manifest["sources"]["init"] is None
    travel = read_pack(out)
    assert not [k for k in travel.weights if k.startswith(("audiomae.", "semantic.", "unet."))]
    codebook, mae = travel.frozen_parts()
    assert torch.equal(codebook, load_state_dict(setup["model"])["semantic.codebook"])
    bundled.write_bytes(bundled.read_bytes()[:-4] + b"\0\0\0\0")
    assert main(["train", "burst", str(out), "-o", str(tmp_path / "b"), "--device", "cpu", "--no-progress"]) == 2
    assert "is not the one this pack was made with" in capsys.readouterr().err


def test_damaged_pack_is_refused(pack, tmp_path, capsys):
    copy = tmp_path / "pack"
    shutil.copytree(pack, copy)
    first = copy / "audio" / "000000.opus"
    first.write_bytes(first.read_bytes()[:-1])
    assert main(["train", "burst", str(copy), "-o", str(tmp_path / "b"), "--device", "cpu"]) == 2
    assert "the audio files do not match their SHA-256" in capsys.readouterr().err
    assert main(["train", "burst", str(tmp_path), "-o", str(tmp_path / "b"), "--device", "cpu"]) == 2
    assert "not a travel pack (no manifest.json)" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def _joined(out: Path, name: str, entry: dict) -> bytes:
    data = b"".join((out / part).read_bytes() for part in entry["parts"])
    assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    return data


@pytest.fixture(scope="module")
def burst(pack, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("burst_out") / "out"
    config = BurstConfig(minutes=1e-4, batch_size=1, windows=2, max_file_bytes=2**20)
    return out, run_burst(pack, out, config, device="cpu", progress=False)


def test_burst_stops_on_time_and_splits_its_outputs(burst, tmp_path):
    out, summary = burst
    assert summary["stopped"] == "time" and summary["steps"] == 1 and summary["windows"] == 2
    assert [int(r["step"]) for r in log_rows(out)] == [1]
    files = _files(out)
    assert max(files.values()) <= 2**20
    names = [part for entry in summary["files"].values() for part in entry["parts"]]
    assert sorted(files) == sorted([*names, "burst.json"]) and len(summary["files"]["checkpoint.pt"]["parts"]) > 1
    assert json.loads((out / "burst.json").read_text()) == json.loads(json.dumps(summary))
    exported = tmp_path / "ldm.safetensors"
    exported.write_bytes(_joined(out, "ldm.safetensors", summary["files"]["ldm.safetensors"]))
    state = load_state_dict(exported)
    assert state["unet.out.2.weight"].dtype == torch.float16 and float(state["schedule.scale_factor"]) == 0.5
    assert sorted({k.split(".")[0] for k in state}) == ["acoustic", "schedule", "unet"]


def test_continuing_on_cpu_from_the_burst(setup, burst, tmp_path):
    """Resume the burst's run (its compact checkpoint joined) or start a run from its weights."""
    out, summary = burst
    model = str(setup["model"])
    args = ["train", "ldm", "--data", str(setup["data"]), "--config", str(setup["config"]), "--preset", "tiny", "--no-progress"]
    args += ["--mae", model, "--vae", model, "--codebook", model, "--windows", "1"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(_joined(out, "checkpoint.pt", summary["files"]["checkpoint.pt"]))
    assert main([*args, "-o", str(run), "--train-steps", "2"]) == 0
    assert [int(r["step"]) for r in log_rows(run)] == [2]
    exported = tmp_path / "ldm.safetensors"
    exported.write_bytes(_joined(out, "ldm.safetensors", summary["files"]["ldm.safetensors"]))
    assert main([*args, "-o", str(tmp_path / "fresh"), "--init", str(exported), "--train-steps", "1"]) == 0
    assert float(load_state_dict(tmp_path / "fresh" / "ldm.safetensors")["schedule.scale_factor"]) == 0.5
    base = tmp_path / "base.safetensors"
    save_safetensors(tiny_model(), base)
    model = assemble(tiny_config(), [exported], None, tmp_path / "model.safetensors", base=base)
    assert torch.equal(model.unet.state_dict()["out.2.weight"], load_state_dict(exported)["unet.out.2.weight"].float())
    assert float(model.schedule.scale_factor) == 0.5


def test_a_non_finite_loss_ends_the_burst_at_the_last_checkpoint(pack, tmp_path, monkeypatch):
    real, failing_step = LDMStage.train_step, [2]

    def failing(self, batch, step):
        losses = real(self, batch, step)
        return {**losses, "v_mse": float("nan")} if step == failing_step[0] else losses

    monkeypatch.setattr(LDMStage, "train_step", failing)
    config = BurstConfig(minutes=10, batch_size=1, windows=1, checkpoint_every=2)
    summary = run_burst(pack, tmp_path / "out", config, device="cpu", progress=False)
    assert summary["steps"] == 2 and summary["stopped"] == "non-finite v_mse at step 2"
    assert "log.csv" not in summary["files"]  # no row logged before the failure (log_every 50)
    failing_step[0] = 0
    with pytest.raises(ValueError, match="before the first checkpoint"):
        run_burst(pack, tmp_path / "out2", config, device="cpu", progress=False)
    assert not (tmp_path / "out2").exists()


@pytest.fixture(scope="module")
def windows():
    config = tiny_config()
    torch.manual_seed(0)
    model = SemantiCodecModel(config, torch.randn(config.semantic_vocab_size, config.feature_dim), with_vae_encoder=True).eval()
    return model, encode_windows(model, tone_and_noise_sampler(163840, 2, 12.0, 3.0), 2, progress=False)


def test_bf16_autocast_step_keeps_the_codebook_in_float32(windows):
    model, windows = windows
    config = model.config
    stage = LDMStage(config, PRESETS["tiny"], codebook=model.semantic.codebook, windows=windows)
    step = _BurstStep(stage, torch.bfloat16, print_every=1)
    losses = step.train_step(CachedWindows(windows, 2).batch(0), 0)
    assert all(np.isfinite(v) for v in losses.values())
    assert stage.model.acoustic.quantizer._codebook.embed.dtype == torch.float32 and bool(stage.stats.initialised)
    assert step.dtype == torch.bfloat16
    stage.train_step = lambda batch, index: {"v_mse": float("inf")}
    with pytest.raises(NonFiniteLoss, match="non-finite v_mse at step 3"):
        step.train_step(CachedWindows(windows, 2).batch(3), 3)


def test_a_first_step_failing_under_autocast_goes_on_in_float32(windows, capsys):
    model, windows = windows
    stage = LDMStage(model.config, PRESETS["tiny"], codebook=model.semantic.codebook, windows=windows)

    def no_bf16_kernel(batch, index):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("no kernel for BFloat16")
        return {"v_mse": 1.0}

    stage.train_step = no_bf16_kernel
    step = _BurstStep(stage, torch.bfloat16, print_every=1)
    assert step.train_step(None, 0) == {"v_mse": 1.0} and step.dtype is None
    assert "training in float32" in capsys.readouterr().out
    step.dtype = torch.bfloat16
    with pytest.raises(RuntimeError, match="no kernel"):
        step.train_step(None, 1)


def test_train_stops_after_max_seconds(windows, tmp_path):
    model, windows = windows
    config = model.config
    preset = replace(PRESETS["tiny"], steps=50, checkpoint_every=20)
    stage = LDMStage(config, preset, codebook=model.semantic.codebook, windows=windows)
    exported = train(stage, CachedWindows(windows, 2), preset, tmp_path, progress=False, max_seconds=0.0)
    assert [int(r["step"]) for r in log_rows(tmp_path)] == [1]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 1
    from safetensors import safe_open

    with safe_open(str(exported), "pt") as file:
        assert file.metadata()["steps"] == "1"


def test_burst_argument_errors(pack, tmp_path, capsys):
    assert main(["train", "burst", str(pack), "-o", str(tmp_path / "o"), "--minutes", "0"]) == 2
    assert "minutes must be > 0" in capsys.readouterr().err
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "log.csv").write_text("x")
    assert main(["train", "burst", str(pack), "-o", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "log.csv already exists (use --force" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "burst", str(pack), "-o", str(tmp_path / "c"), "--device", "cuda"]) == 2
        assert "torch sees no CUDA device" in capsys.readouterr().err


def test_prepared_script_runs_the_burst_from_the_checkout(pack, tmp_path):
    """semanticodec/train/gpu_burst.sh run, as the device machine runs it (there: no install of the package,
    wheels from .burst/wheels); here on CPU with the tiny pack."""
    out = tmp_path / "out"
    env = {**os.environ, "PACK": str(pack), "DEVICE": "cpu", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    command = ["bash", str(ROOT / "semanticodec" / "train" / "gpu_burst.sh"), "run", str(out), "0.0001", "--batch-size", "1", "--windows", "1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    first = done.stdout.splitlines()[0]
    assert "semanticodec-burst." in first and "/src/semanticodec/kmeans/__init__.py" in first, first
    assert json.loads(done.stdout.splitlines()[-1])["steps"] == 1
    assert sorted(_files(out)) == ["burst.json", "burst.log", "checkpoint.pt", "ldm.safetensors", "log.csv"]
